"""An outbox row stores a message's ``extra`` exactly as a JSON round trip gives it back."""

import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest

from voicedrive_receiver.channels.base import RenderedMessage
from voicedrive_receiver.planning import rendered_to_json
from voicedrive_receiver.rendering import SlackSafe


def round_trip(extra: Any) -> Any:
    return json.loads(json.dumps(extra, ensure_ascii=False, default=str))


EXTRAS: dict[str, Any] = {
    "slack blocks": {
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*レベル1* &amp;"}}]
    },
    "empty": {},
    "scalars": {"n": 3, "x": -0.0, "big": 10**30, "ok": True, "none": None, "s": "\ud800"},
    "tuple becomes a list": {"pair": ("a", "b")},
    "str subclass becomes str": {"text": SlackSafe("&lt;")},
    "non-text keys become text": {"levels": {1: "a", 2.5: "b", None: "c", False: "d"}},
    "objects become their str": {"at": datetime(2025, 9, 1, tzinfo=UTC)},
    "shared lists are copied": {"a": (shared := [1, 2]), "b": shared},
    "deep nesting": {"d": json.loads("[" * 40 + '"x"' + "]" * 40)},
}


@pytest.mark.parametrize("extra", EXTRAS.values(), ids=EXTRAS.keys())
def test_extra_is_stored_as_its_json_round_trip(extra: dict[str, Any]) -> None:
    stored = rendered_to_json(RenderedMessage(text="t", extra=extra))["extra"]
    expected = round_trip(extra)
    assert stored == expected
    assert json.dumps(stored, sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_stored_extra_shares_nothing_with_the_message() -> None:
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": "a"}}]
    stored = rendered_to_json(RenderedMessage(text="t", extra={"blocks": blocks}))["extra"]
    blocks[0]["text"]["text"] = "changed"
    assert stored["blocks"][0]["text"]["text"] == "a"


def test_nan_stays_nan() -> None:
    stored = rendered_to_json(RenderedMessage(text="t", extra={"x": math.nan}))["extra"]
    assert math.isnan(stored["x"])


def test_a_cyclic_extra_fails_as_the_round_trip_does() -> None:
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    with pytest.raises(ValueError, match="Circular reference"):
        round_trip(cyclic)
    with pytest.raises(ValueError, match="Circular reference"):
        rendered_to_json(RenderedMessage(text="t", extra=cyclic))


def test_an_int_beyond_the_conversion_limit_fails_as_the_round_trip_does() -> None:
    huge = {"n": 10**5000}
    with pytest.raises(ValueError, match="integer string conversion"):
        round_trip(huge)
    with pytest.raises(ValueError, match="integer string conversion"):
        rendered_to_json(RenderedMessage(text="t", extra=huge))
