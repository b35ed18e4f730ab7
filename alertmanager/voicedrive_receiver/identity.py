"""Delivery identity: what makes two webhook POSTs "the same notification".

Built from the group key, the status and each alert's fingerprint and start, never from texts,
``externalURL`` or ``receiver``: HA peers and a second Alertmanager send the same group with a
different URL, and a repeat_interval resend carries identical alerts.
"""

import hashlib
import json
from json.encoder import encode_basestring_ascii as _quote

from voicedrive_receiver.models import Notification

# The digests below hash compact JSON (json.dumps with separators=(",", ":")); they are stored,
# so the text must never change. For strings only, that text is written directly (the quoting
# is json's own function), which spares building an encoder per id; anything else goes
# through json.dumps as before.


def _text_list(*items: str) -> str:
    if all(type(item) is str for item in items):
        return "[" + ",".join(map(_quote, items)) + "]"
    return json.dumps(list(items), separators=(",", ":"))


def notification_identity(notification: Notification) -> str:
    """Stable hex digest identifying a notification's content."""
    alerts = notification.firing() if notification.status == "firing" else notification.alerts
    parts = sorted((a.fingerprint, a.starts_at.isoformat(timespec="microseconds")) for a in alerts)
    head = (notification.group_key, notification.status)
    if all(type(x) is str for x in head) and all(type(fp) is str for fp, _ in parts):
        listed = ",".join(f"[{_quote(fp)},{_quote(start)}]" for fp, start in parts)
        blob = f"[{_quote(head[0])},{_quote(head[1])},[{listed}]]"
    else:
        blob = json.dumps([*head, parts], separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def delivery_id(identity: str, channel: str, contact: str) -> str:
    """The outbox key of one (notification, channel, recipient) message."""
    blob = _text_list(identity, channel, contact)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:40]


def pair_key(group_key: str, channel: str, contact: str) -> str:
    """Key of one (group, channel, recipient) conversation: its messages go out in order."""
    blob = _text_list(group_key, channel, contact)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:40]
