"""Console/file channel: the demo's outbox."""

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from voicedrive_common.clock import FakeClock
from voicedrive_common.confload import Node
from voicedrive_common.errors import ConfigError
from voicedrive_common.secrets import Secret
from voicedrive_receiver.channels.base import OutboundMessage
from voicedrive_receiver.channels.console import ConsoleType

MessageFn = Callable[..., OutboundMessage]


async def test_appends_one_json_line_per_message(
    tmp_path: Path, message: MessageFn, clock: FakeClock
) -> None:
    outbox = tmp_path / "outbox" / "messages.jsonl"
    kind = ConsoleType()
    settings = kind.parse(Node({"stdout": False, "file": str(outbox)}, "channels.demo"))
    channel = await kind.create(settings, name="demo", clock=clock)
    await channel.send(message(text="一通目", delivery_id="d-1"))
    await channel.send(message(text="二通目", delivery_id="d-2", status="resolved"))
    lines = [json.loads(line) for line in outbox.read_text(encoding="utf-8").splitlines()]
    assert [(r["delivery_id"], r["status"], r["text"]) for r in lines] == [
        ("d-1", "firing", "一通目"),
        ("d-2", "resolved", "二通目"),
    ]
    assert lines[0]["ts"] == "2025-09-01T00:00:00Z"
    assert lines[0]["contact"] == "hotline"


async def test_prints_to_the_stream(message: MessageFn) -> None:
    stream = io.StringIO()
    kind = ConsoleType()
    channel = await kind.create(kind.parse(Node({}, "channels.c")), name="c", stream=stream)
    result = await channel.send(message(text="障害", subject="件名"))
    assert result.ok
    assert stream.getvalue() == "=== c -> hotline [firing] ===\n  | 件名\n  | 障害\n"


async def test_control_characters_in_alert_text_are_printed_as_visible_escapes(
    message: MessageFn,
) -> None:
    stream = io.StringIO()
    kind = ConsoleType()
    channel = await kind.create(kind.parse(Node({}, "channels.c")), name="c", stream=stream)
    await channel.send(message(text="障害\x1b[2K\rlevel=info\x00\u202e", subject="件\n名"))
    assert stream.getvalue() == (
        "=== c -> hotline [firing] ===\n  | 件\\n名\n  | 障害\\x1b[2K\\rlevel=info\\x00\\u202e\n"
    )


async def test_line_breaks_of_the_message_text_are_kept_behind_the_marker(
    message: MessageFn,
) -> None:
    stream = io.StringIO()
    kind = ConsoleType()
    channel = await kind.create(kind.parse(Node({}, "channels.c")), name="c", stream=stream)
    await channel.send(message(text="一行目\n二行目"))
    assert stream.getvalue().splitlines()[1:] == ["  | 一行目", "  | 二行目"]


async def test_annotation_mimicking_an_entry_stays_inside_its_message(
    message: MessageFn,
) -> None:
    stream = io.StringIO()
    kind = ConsoleType()
    channel = await kind.create(kind.parse(Node({}, "channels.c")), name="c", stream=stream)
    forged = (
        "API遅延\n=== c -> hotline [resolved] ===\n解決しました\n"
        'time=2025-09-01T09:00:00Z level=info msg="all clear"'
    )
    await channel.send(message(text=forged))
    lines = stream.getvalue().splitlines()
    # One entry: only its own head starts at the margin; the text is all there, marked.
    assert [line for line in lines if not line.startswith("  | ")] == [
        "=== c -> hotline [firing] ==="
    ]
    assert [line.removeprefix("  | ") for line in lines[1:]] == forged.split("\n")


async def test_never_writes_the_recipient_address(tmp_path: Path, message: MessageFn) -> None:
    outbox = tmp_path / "out.jsonl"
    kind = ConsoleType()
    channel = await kind.create(
        kind.parse(Node({"stdout": False, "file": str(outbox)}, "channels.c")), name="c"
    )
    await channel.send(message(address=Secret("+819012345678")))
    assert "+819012345678" not in outbox.read_text(encoding="utf-8")


async def test_unwritable_file_is_a_retryable_failure(tmp_path: Path, message: MessageFn) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    kind = ConsoleType()
    settings = kind.parse(Node({"stdout": False, "file": str(blocker / "out.jsonl")}, "c"))
    result = await (await kind.create(settings, name="c")).send(message())
    assert (result.ok, result.permanent) == (False, False)


def test_config_refuses_to_send_nowhere() -> None:
    with pytest.raises(ConfigError, match=r"channels.c.stdout: is false and no file is set"):
        ConsoleType().parse(Node({"stdout": False}, "channels.c"))
