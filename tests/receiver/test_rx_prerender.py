"""Messages rendered before the ingest transaction are used only when the guess was right."""

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rx_helpers import Harness, alert, make_config, payload, plain_render

from voicedrive_receiver.channels.base import RenderedMessage
from voicedrive_receiver.models import parse_notification
from voicedrive_receiver.planning import OutboxPlanner, build_batch, make_planner
from voicedrive_receiver.processing import Processor
from voicedrive_receiver.store.base import GroupState

RECEIVED = 1_756_684_800.0  # a weekday morning: nothing is held for business hours


def planner_for(tmp_path: Path, calls: list[str], level: str = "1") -> OutboxPlanner:
    config = make_config(tmp_path)
    body = payload(alert(level=level))
    notification = parse_notification(body)
    plan = build_batch(notification, json.dumps(body), config, received_at=RECEIVED)

    def render(kind: str, status: str, lang: str, context: Mapping[str, Any]) -> RenderedMessage:
        calls.append(str(context["incident_id"]))
        message: RenderedMessage = plain_render(kind, status, lang, context)
        return message

    return make_planner(notification, plan, config, render)


def state(incident_id: str, level: int) -> GroupState:
    return GroupState(
        incident_id=incident_id,
        incident_level=level,
        opened=False,
        firing_routes=(),
        new_firing=("fp1",),
    )


def test_a_right_guess_is_rendered_once_and_used_as_is(tmp_path: Path) -> None:
    calls: list[str] = []
    planner = planner_for(tmp_path, calls)
    planner.prerender("INC-1", 1)
    rows = planner(state("INC-1", 1))
    assert calls == ["INC-1"]
    assert rows
    assert all("INC-1" in row.rendered["text"] for row in rows)


def test_a_stale_incident_guess_renders_again_for_the_incident_the_store_holds(
    tmp_path: Path,
) -> None:
    calls: list[str] = []
    planner = planner_for(tmp_path, calls)
    planner.prerender("INC-old", 1)
    rows = planner(state("INC-new", 1))
    assert rows
    assert all("INC-new" in row.rendered["text"] for row in rows)
    assert not any("INC-old" in row.rendered["text"] for row in rows)


def test_a_stale_level_guess_renders_the_level_the_incident_has(tmp_path: Path) -> None:
    calls: list[str] = []
    planner = planner_for(tmp_path, calls)
    planner.prerender("INC-1", 1)
    rows = planner(state("INC-1", 3))  # escalated meanwhile: Level 3 and its channels
    assert {row.level for row in rows} == {3}
    assert all(" L3 " in row.rendered["text"] for row in rows)
    assert {row.channel for row in rows} > {"slack"}


def count_renders(rx: Harness) -> list[tuple[str, str]]:
    """Make the receiver's render record (kind, status) of every message it renders."""
    calls: list[tuple[str, str]] = []

    def render(kind: str, status: str, lang: str, context: Mapping[str, Any]) -> RenderedMessage:
        calls.append((kind, status))
        message: RenderedMessage = plain_render(kind, status, lang, context)
        return message

    rx.services.render = render
    return calls


async def test_a_resent_notification_is_not_rendered_again_and_pages_once(rx: Harness) -> None:
    calls = count_renders(rx)
    body = payload(alert(level="1"))
    await rx.ingest(body)
    assert calls == [("slack", "firing")]
    again = await rx.ingest(body)
    assert again.outcome == "duplicate"
    assert calls == [("slack", "firing")]
    await rx.drain()
    assert rx.channels["slack"].contacts() == [("emergency_channel", "firing")]


async def test_a_resolved_notification_of_a_group_never_seen_firing_renders_nothing(
    rx: Harness,
) -> None:
    calls = count_renders(rx)
    processed = await rx.ingest(payload(alert(level="1", status="resolved")))
    assert processed.outcome == "stored"
    assert processed.enqueued == 0
    assert calls == []


async def test_a_resolved_notification_renders_once_for_the_incident_it_ends(
    rx: Harness,
) -> None:
    calls = count_renders(rx)
    firing = await rx.ingest(payload(alert(level="1")))
    resolved = await rx.ingest(payload(alert(level="1", status="resolved")))
    assert resolved.incident_id == firing.incident_id
    assert calls == [("slack", "firing"), ("slack", "resolved")]
    await rx.drain()
    assert rx.channels["slack"].contacts() == [
        ("emergency_channel", "firing"),
        ("emergency_channel", "resolved"),
    ]
    assert firing.incident_id in rx.channels["slack"].sent[1].rendered.text


async def test_after_a_restart_a_resolved_notification_is_rendered_once(rx: Harness) -> None:
    calls = count_renders(rx)
    firing = await rx.ingest(payload(alert(level="1")))
    await rx.post(payload(alert(level="1", status="resolved")), process=False)
    restarted = Processor(rx.services)  # remembers no group yet
    [done] = await restarted.process_pending()
    assert done.incident_id == firing.incident_id
    assert done.enqueued == 1
    assert calls == [("slack", "firing"), ("slack", "resolved")]


async def test_a_group_resent_as_part_of_it_resolves_is_not_rendered(rx: Harness) -> None:
    calls = count_renders(rx)
    await rx.ingest(payload(alert(level="1", fingerprint="a"), alert(level="1", fingerprint="b")))
    assert calls == [("slack", "firing")]
    partly = await rx.ingest(
        payload(
            alert(level="1", fingerprint="a"), alert(level="1", fingerprint="b", status="resolved")
        )
    )
    assert (partly.outcome, partly.enqueued) == ("stored", 0)
    assert calls == [("slack", "firing")]
    grown = await rx.ingest(
        payload(alert(level="1", fingerprint="a"), alert(level="1", fingerprint="c"))
    )
    assert grown.enqueued == 1
    assert calls == [("slack", "firing"), ("slack", "firing")]
    await rx.drain()
    assert rx.channels["slack"].contacts() == [("emergency_channel", "firing")] * 2


async def test_an_alert_firing_again_after_it_resolved_is_rendered_and_pages(rx: Harness) -> None:
    calls = count_renders(rx)
    await rx.ingest(payload(alert(level="1", fingerprint="a"), alert(level="1", fingerprint="b")))
    await rx.ingest(
        payload(
            alert(level="1", fingerprint="a"), alert(level="1", fingerprint="b", status="resolved")
        )
    )
    refired = alert(level="1", fingerprint="b", starts_at="2025-09-01T10:00:00Z")
    again = await rx.ingest(payload(alert(level="1", fingerprint="a"), refired))
    assert again.enqueued == 1
    assert calls == [("slack", "firing"), ("slack", "firing")]
