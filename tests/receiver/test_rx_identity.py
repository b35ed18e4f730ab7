"""Stored delivery identities never change: ids written before an upgrade still match."""

import hashlib
import json

import pytest
from rx_helpers import alert, payload

from voicedrive_receiver.identity import delivery_id, notification_identity, pair_key
from voicedrive_receiver.models import parse_notification

# Quotes, backslashes, control characters, line separators, emoji and accents: every kind of
# character JSON escapes or keeps.
TRICKY = ["plain", "", 'クエリ"遅延"\\ \n\t\x01 \u2028 😀 é', '{}:{alertname="X"}']


def compact_digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, separators=(",", ":")).encode("utf-8")).hexdigest()


def test_notification_identity_is_the_digest_it_always_was() -> None:
    notification = parse_notification(
        payload(
            alert(fingerprint='fp"1', starts_at="2025-09-01T09:00:00.123456789+09:00"),
            alert(fingerprint="é2", status="resolved"),
            alert(fingerprint="a0"),
            group_key='{}:{alertname="遅延"}',
        )
    )
    # Written by the implementation that has stored every identity so far.
    expected = "5649a6b5d08f335e85e7a3a2fb46c9919f9915ab7133687c2020e888bfbea1cc"
    assert notification_identity(notification) == expected
    parts = sorted(
        (a.fingerprint, a.starts_at.isoformat(timespec="microseconds"))
        for a in notification.firing()
    )
    assert expected == compact_digest([notification.group_key, "firing", parts])


@pytest.mark.parametrize("text", TRICKY)
def test_delivery_id_and_pair_key_hash_the_compact_json_of_their_parts(text: str) -> None:
    assert delivery_id("ab" * 32, text, "room") == compact_digest(["ab" * 32, text, "room"])[:40]
    assert pair_key(text, "slack", text) == compact_digest([text, "slack", text])[:40]


def test_delivery_id_and_pair_key_are_the_ids_they_always_were() -> None:
    # Written by the implementation that has stored every id so far.
    assert delivery_id("ab" * 32, TRICKY[2], "room") == "8d5bc7cc7122c6e9794bff14de7dd7f5c043d617"
    assert pair_key(TRICKY[3], "slack", TRICKY[3]) == "3754788932d5465fd3ea4e92d6d29a27a202dec7"
