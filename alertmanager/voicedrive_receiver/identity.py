"""Delivery identity: what makes two webhook POSTs "the same notification".

Built from the group key, the status and each alert's fingerprint and start, never from texts,
``externalURL`` or ``receiver``: HA peers and a second Alertmanager send the same group with a
different URL, and a repeat_interval resend carries identical alerts.
"""

import hashlib
import json

from voicedrive_receiver.models import Notification


def notification_identity(notification: Notification) -> str:
    """Stable hex digest identifying a notification's content."""
    alerts = notification.firing() if notification.status == "firing" else notification.alerts
    parts = sorted((a.fingerprint, a.starts_at.isoformat(timespec="microseconds")) for a in alerts)
    blob = json.dumps([notification.group_key, notification.status, parts], separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def delivery_id(identity: str, channel: str, contact: str) -> str:
    """The outbox key of one (notification, channel, recipient) message."""
    blob = json.dumps([identity, channel, contact], separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:40]


def pair_key(group_key: str, channel: str, contact: str) -> str:
    """Key of one (group, channel, recipient) conversation: its messages go out in order."""
    blob = json.dumps([group_key, channel, contact], separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:40]
