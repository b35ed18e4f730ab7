"""Messages rendered before the ingest transaction are used only when the guess was right."""

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rx_helpers import alert, make_config, payload, plain_render

from voicedrive_receiver.channels.base import RenderedMessage
from voicedrive_receiver.models import parse_notification
from voicedrive_receiver.planning import OutboxPlanner, build_batch, make_planner
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
