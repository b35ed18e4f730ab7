"""The fault per level, what it must page, and the checks both end-to-end variants share.

P6: Slack for every level, email from Level 2, SMS from Level 3, a phone call at Level 4.
A resolved message goes where the firing one went, except the phone (routing.resolved_routes).
"""

import json
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from e2e_stack import WATCH, E2EStack, Page, count, wait_for

from voicedrive_common.durations import parse_duration

CHANNELS = ("slack", "email", "sms", "phone")
PAGE_TIMEOUT_S = 60.0
RESOLVE_TIMEOUT_S = 45.0
BASELINE_TIMEOUT_S = 45.0
# After the expected pages arrived, how long nothing else may arrive: more than two
# Alertmanager group intervals (2 s) plus a delivery, so a late extra page would show.
SETTLE_S = 5.0
REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "grafana" / "dashboards" / "voicedrive-overview.json"
# What Grafana substitutes before it sends a panel's query to Prometheus.
# The recording rule APISlow counts requests with, and its min_requests plus one.
WARM = 'endpoint:voicedrive_api_requests:increase{endpoint="/health"}'
WARM_REQUESTS = 4
_LEVEL = re.compile(r"(?:レベル|\bL)([1-4])")
GRAFANA_VARIABLES = {"$__rate_interval": "10s", "$__interval": "1s", "$__range": "5m"}


@dataclass(frozen=True)
class Scenario:
    """One fault, the alert that must page for it, and the channels that page must reach."""

    level: int
    title: str
    faults: tuple[tuple[str, dict[str, object]], ...]
    alert: str
    component: str
    channels: tuple[str, ...]
    # Alerts the fault also fires that must stay silent (inhibited by ``alert``).
    inhibited: tuple[str, ...] = ()


SCENARIOS = {
    2: Scenario(
        level=2,
        title="slow API (/health answers after 600 ms)",
        faults=(("api", {"endpoint": "/health", "latency_seconds": 0.6}),),
        alert="VoiceDriveAPISlow",
        component="api",
        channels=("slack", "email"),
    ),
    3: Scenario(
        level=3,
        title="database down (the simulator's proxy refuses connections)",
        faults=(("db", {"down": True}),),
        alert="VoiceDriveDatabaseDown",
        component="database",
        channels=("slack", "email", "sms"),
    ),
    4: Scenario(
        level=4,
        title="API and database down",
        faults=(("api", {"endpoint": "*", "down": True}), ("db", {"down": True})),
        alert="VoiceDriveSystemDown",
        component="api",
        channels=("slack", "email", "sms", "phone"),
        inhibited=("VoiceDriveAPIDown", "VoiceDriveDatabaseDown"),
    ),
}


@dataclass
class Fired:
    """What one scenario's fault produced."""

    scenario: Scenario
    first_page_s: float
    pages: list[Page]
    summaries: dict[str, str]


@dataclass
class Run:
    """Results across the tests of one stack, in order."""

    fired: dict[int, Fired] = field(default_factory=dict)
    recovered: dict[int, float] = field(default_factory=dict)
    after_recovery: dict[int, list[Page]] = field(default_factory=dict)


def run_fixture() -> Any:
    """A module's ``run`` fixture: one fresh ``Run`` its tests share, in order."""

    @pytest.fixture(scope="module", name="run")
    def run() -> Run:
        return Run()

    return run


def expected(channels: tuple[str, ...]) -> dict[str, int]:
    """One page on each of ``channels``, none elsewhere."""
    return {c: int(c in channels) for c in CHANNELS}


def _summaries(stack: E2EStack) -> dict[str, str]:
    return {
        a["labels"]["alertname"]: a["annotations"].get("summary", "")
        for a in stack.alerts()
        if a["state"] == "firing"
    }


def fire(stack: E2EStack, run: Run, level: int) -> Fired:
    """Inject the fault of ``level`` on a quiet stack; wait for its pages and a quiet spell."""
    scenario = SCENARIOS[level]
    # Warmed up: APISlow needs enough probes in its window before it can give a verdict, or
    # the first measurement would include Prometheus filling its window after the start.
    wait_for(
        "enough API probes in Prometheus for a latency verdict",
        lambda: stack.query(f"{WARM} >= {WARM_REQUESTS}"),
        BASELINE_TIMEOUT_S,
        logs=stack.logs,
    )
    wait_for(
        "no levelled alert pending or firing before the fault",
        lambda: not stack.levelled_alerts() or None,
        BASELINE_TIMEOUT_S,
        logs=lambda: f"{stack.levelled_alerts()}",
    )
    mark = stack.inbox.mark()
    started = time.monotonic()
    for kind, body in scenario.faults:
        stack.fault(kind, body)

    firing_at: list[float] = []

    def all_paged() -> bool:
        if not firing_at and stack.firing(scenario.alert):
            firing_at.append(time.monotonic())
        got = count(stack.inbox.pages(mark), "firing")
        return all(got[c] >= 1 for c in scenario.channels)

    wait_for(
        f"Level {level} pages on {', '.join(scenario.channels)}",
        all_paged,
        PAGE_TIMEOUT_S,
        logs=lambda: f"pages: {stack.inbox.pages(mark)}\nalerts: {stack.alerts()}\n{stack.logs()}",
    )
    summaries = _summaries(stack)
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        # The inhibited alerts must really be firing meanwhile, or their silence proves nothing.
        summaries.update(_summaries(stack))
        time.sleep(0.5)
    pages = stack.inbox.pages(mark)
    firing = [p.at for p in pages if p.status == "firing"]
    first = min(firing) - started
    fired = Fired(scenario=scenario, first_page_s=first, pages=pages, summaries=summaries)
    run.fired[level] = fired
    _record(stack, f"level{level}_first_page_s", first)
    _record(stack, f"level{level}_all_channels_s", max(firing) - started)
    if firing_at:
        _record(stack, f"level{level}_prometheus_firing_s", firing_at[0] - started)
    return fired


def recover(stack: E2EStack, run: Run, level: int) -> list[Page]:
    """Lift every fault; wait for the resolved pages and a quiet spell."""
    scenario = SCENARIOS[level]
    assert level in run.fired, f"the Level {level} fault did not run"
    mark = stack.inbox.mark()
    started = time.monotonic()
    stack.clear_faults()
    resolved_on = tuple(c for c in scenario.channels if c != "phone")

    def all_resolved() -> bool:
        got = count(stack.inbox.pages(mark), "resolved")
        return all(got[c] >= 1 for c in resolved_on)

    wait_for(
        f"Level {level} resolved messages on {', '.join(resolved_on)}",
        all_resolved,
        RESOLVE_TIMEOUT_S,
        logs=lambda: f"pages: {stack.inbox.pages(mark)}\nalerts: {stack.alerts()}\n{stack.logs()}",
    )
    run.recovered[level] = time.monotonic() - started
    _record(stack, f"level{level}_resolved_s", run.recovered[level])
    time.sleep(SETTLE_S)
    run.after_recovery[level] = stack.inbox.pages(mark)
    return run.after_recovery[level]


def assert_pages_of(fired: Fired) -> None:
    """Exactly one firing page per channel of the level; nothing resolved meanwhile."""
    scenario = fired.scenario
    assert count(fired.pages, "firing") == expected(scenario.channels), fired.pages
    assert count(fired.pages, "resolved") == expected(()), fired.pages
    summary = fired.summaries.get(scenario.alert)
    assert summary, f"{scenario.alert} was not firing in Prometheus: {fired.summaries}"
    for page in fired.pages:
        if page.channel != "phone":  # the call reads the summary too, but as TwiML
            assert summary in page.text or summary in page.head, page
        assert page_level(page) == scenario.level, page


def page_level(page: Page) -> int | None:
    """The level a page states first (レベル4 in Slack, mail and calls, L4 in an SMS)."""
    found = _LEVEL.search(page.head)
    return int(found.group(1)) if found else None


def assert_inhibited_not_paged(fired: Fired) -> None:
    """The lower alerts the fault also fired are in no page."""
    for name in fired.scenario.inhibited:
        summary = fired.summaries.get(name)
        assert summary, f"{name} never fired, so its silence proves nothing: {fired.summaries}"
        for page in fired.pages:
            assert summary not in page.text, f"{name} was paged: {page}"


def staggered_recovery(stack: E2EStack, run: Run) -> list[Page]:
    """A Level 4 outage whose API returns STAGGER_S before its database; the pages after."""
    fire(stack, run, 4)
    mark = stack.inbox.mark()
    stack.fault("api", {"endpoint": "*", "down": False})
    time.sleep(STAGGER_S)
    stack.clear_faults()

    def resolved() -> bool:
        got = count(stack.inbox.pages(mark), "resolved")
        return all(got[c] >= 1 for c in ("slack", "email", "sms"))

    wait_for(
        "the Level 4 resolved messages",
        resolved,
        RESOLVE_TIMEOUT_S,
        logs=lambda: f"pages: {stack.inbox.pages(mark)}\n{stack.logs()}",
    )
    time.sleep(SETTLE_S)
    return stack.inbox.pages(mark)


def assert_resolved_pages(level: int, pages: list[Page]) -> None:
    """One resolved message on each channel the firing page reached, except the phone."""
    scenario = SCENARIOS[level]
    resolved_on = tuple(c for c in scenario.channels if c != "phone")
    assert count(pages, "resolved") == expected(resolved_on), pages
    # Nothing of this level fires again (no re-page, no call).
    assert [p for p in pages if p.status == "firing" and page_level(p) == level] == [], pages


def assert_no_firing_page(pages: list[Page]) -> None:
    """Nothing fires while the stack recovers."""
    assert count(pages, "firing") == expected(()), pages


# A Level 4 outage whose parts recover apart: the API comes back STAGGER_S before the
# database (as after a restart of one of them). VoiceDriveSystemDown keeps firing for a while
# after its expression turns false (`keep_firing_for`), so the database part resolves while it
# is still inhibited and nothing is paged at Level 3. Shorter than the e2e's keep_firing_for
# (e2e_stack.OVERRIDES, 5 s) by a scrape and an evaluation (1 s each).
STAGGER_S = 3.0


def latest_incident(stack: E2EStack, level: int, receiver: int = 0) -> dict[str, Any]:
    """The newest incident of the scenario's component."""
    scenario = SCENARIOS[level]
    found = [i for i in stack.incidents(receiver) if i["component"] == scenario.component]
    assert found, stack.incidents(receiver)
    return found[0]


def assert_incident_closed_after_watch(stack: E2EStack, level: int) -> dict[str, Any]:
    """The incident resolves, is watched for WATCH, then closes; its level is the scenario's."""
    watch = parse_duration(WATCH, "watch")
    incident = wait_for(
        f"the Level {level} incident closed",
        lambda: (lambda i: i if i["status"] == "closed" else None)(latest_incident(stack, level)),
        watch + 20,
        logs=lambda: f"{latest_incident(stack, level)}\n{stack.logs()}",
    )
    assert incident["level"] == level
    assert incident["resolved_at"] is not None
    resolved = _epoch(incident["resolved_at"])
    closed = _epoch(incident["closed_at"])
    # Closed only after the whole watch (P8 step 4), not at resolution.
    assert closed - resolved >= watch - 0.05, incident
    return incident


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def panel_expressions() -> list[tuple[str, str]]:
    """(panel title, PromQL as Grafana sends it) for every target of the overview dashboard."""
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    out = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for variable, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(variable, value)
                out.append((f"{panel.get('title')} {target.get('refId', '')}", expr))
            walk(panel.get("panels", []))

    walk(board["panels"])
    return out


def empty_panels(stack: E2EStack) -> list[str]:
    """Panel expressions that returned no series over the run (as a dashboard range shows it)."""
    end = time.time()
    empty = []
    for title, expr in panel_expressions():
        status, body = stack.query_range(expr, stack.started_at, end)
        if status != 200:
            empty.append(f"{title}: HTTP {status} {body}")
        elif not body["data"]["result"]:
            empty.append(f"{title}: no series for {expr}")
    return empty


def _record(stack: E2EStack, key: str, value: float) -> None:
    """Append a measurement to $VOICEDRIVE_E2E_TIMINGS (JSON lines), when set."""
    target = os.environ.get("VOICEDRIVE_E2E_TIMINGS")
    if target:
        line = {"variant": stack.variant, "measure": key, "seconds": round(value, 2)}
        with open(target, "a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")
    print(f"[e2e {stack.variant}] {key} = {value:.2f}s")


def assert_alive(stack: E2EStack) -> None:
    """Every service still runs (a crash would explain any failure)."""
    if stack.exited():
        pytest.fail(f"exited: {stack.exited()}\n{stack.logs()}", pytrace=False)
