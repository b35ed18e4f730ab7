"""The fire drill: faults through the simulator, each page shown as it arrives on its channel.

The steps (``Drill.run``), each bounded and reported on its own:

1. Level 2 twice at once: ``/api/status`` answers 503 (part of the functions stopped) and 30 %
   of the notifications fail. The notification incident is acknowledged through the receiver's
   API as soon as it pages; the API incident is left alone until it escalates to Level 3 (its
   escalation page arrives on the Level 3 channel). Once the acknowledged incident is past its
   own escalation time it is shown still at Level 2; then the faults are lifted and both
   resolve.
2. Level 3: the database is down; paged on the SMS stand-in; lifted; resolved. Meanwhile the
   escalated API incident closes after its recovery watch.
3. Level 4: API listener and database down: the phone stand-in is paged, and no Level 3 page
   arrives (Alertmanager inhibits the alerts the outage explains); lifted; resolved.
4. The Markdown record of the escalated incident.
5. The daily check (P9): one test message per channel, each seen arriving, then the checklist.

Pages are read from the receiver's file outboxes (console, SMS and phone stand-ins: JSON lines)
and the mail catcher's files. Every wait has a bound; a step that runs out of time fails naming
what it waited for, its faults are lifted, and the drill goes on with the next step.
"""

import asyncio
import contextlib
import email
import email.policy
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar

import aiohttp

from voicedrive_common.errors import VoiceDriveError
from voicedrive_demo.timing import Timing

T = TypeVar("T")


@dataclass(frozen=True)
class Fault:
    """One admin API call: ``PUT /admin/faults/<kind>`` with ``body``."""

    kind: str
    body: Mapping[str, object]


API_PART_DOWN = Fault("api", {"endpoint": "/api/status", "status": 503})
NOTIFICATIONS_FAILING = Fault("notifications", {"failure_ratio": 0.3})
DB_DOWN = Fault("db", {"down": True})
API_DOWN = Fault("api", {"endpoint": "*", "down": True})


@dataclass(frozen=True)
class Page:
    """One message the receiver sent, as seen on a channel."""

    channel: str
    status: str
    level: int | None
    summary: str
    incident_id: str | None = None
    text: str = ""

    @property
    def escalation(self) -> bool:
        """The receiver's escalation message (``【エスカレーション Level 2→3】``)."""
        return _ESCALATION.search(self.summary + "\n" + self.text) is not None

    @property
    def test(self) -> bool:
        """A daily check test message (``【疎通確認】``)."""
        return _TEST.search(self.summary + "\n" + self.text) is not None


_LEVEL = re.compile(r"(?:レベル|Level\s*)([1-4])", re.IGNORECASE)
_RESOLVED = re.compile(r"\[(?:解決|resolved)\]", re.IGNORECASE)
_ESCALATION = re.compile(r"エスカレーション|ESCALATED")
_TEST = re.compile(r"疎通確認|connectivity check", re.IGNORECASE)
_INCIDENT_URL = re.compile(r"/api/incidents/([A-Za-z0-9_-]+)")


class PageWatcher:
    """Reads pages that arrived since the last poll from the file outboxes and the mail folder."""

    def __init__(
        self, *, outbox: Path, mail_dir: Path, channel_outboxes: Sequence[Path] = ()
    ) -> None:
        self._files = [outbox, *channel_outboxes]
        self._mail_dir = mail_dir
        self._offsets = dict.fromkeys(self._files, 0)
        self._seen_mail: set[str] = set()

    def poll(self) -> list[Page]:
        """New pages, file outboxes first, then mails."""
        pages = []
        for path in self._files:
            pages += self._lines(path)
        return pages + self._mails()

    def _lines(self, path: Path) -> list[Page]:
        try:
            with path.open("rb") as source:
                source.seek(self._offsets[path])
                data = source.read()
        except FileNotFoundError:
            return []
        # A line still being written has no newline yet: leave it for the next poll.
        complete = data[: data.rfind(b"\n") + 1]
        self._offsets[path] += len(complete)
        pages = []
        for line in complete.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if not isinstance(entry, dict):
                continue
            text = str(entry.get("text") or "")
            head = str(entry.get("subject") or "") or (text.splitlines()[0] if text else "")
            level = entry.get("level")
            incident = entry.get("incident_id")
            pages.append(
                Page(
                    channel=str(entry.get("channel", "console")),
                    status=str(entry.get("status", "firing")),
                    level=level if isinstance(level, int) else None,
                    summary=head,
                    incident_id=incident if isinstance(incident, str) else None,
                    text=text,
                )
            )
        return pages

    def _mails(self) -> list[Page]:
        try:
            names = sorted(p.name for p in self._mail_dir.glob("*.eml"))
        except OSError:
            return []
        pages = []
        for name in names:
            if name in self._seen_mail:
                continue
            self._seen_mail.add(name)
            message = email.message_from_bytes(
                (self._mail_dir / name).read_bytes(), policy=email.policy.default
            )
            subject = str(message.get("Subject", ""))
            body = _mail_text(message)
            header_level = str(message.get("X-VoiceDrive-Level", ""))
            match = _LEVEL.search(subject)
            level = (
                int(header_level)
                if header_level.isdigit()
                else (int(match.group(1)) if match else None)
            )
            found = _INCIDENT_URL.search(body)
            pages.append(
                Page(
                    channel="email",
                    status="resolved" if _RESOLVED.search(subject) else "firing",
                    level=level,
                    summary=subject,
                    incident_id=found.group(1) if found else None,
                    text=body,
                )
            )
        return pages


def _mail_text(message: email.message.Message) -> str:
    if not isinstance(message, email.message.EmailMessage):
        return ""
    part = message.get_body(preferencelist=("plain",))
    if part is None or not isinstance(part, email.message.EmailMessage):
        return ""
    try:
        return str(part.get_content())
    except (LookupError, ValueError):
        return ""


# --- matching pages ------------------------------------------------------------------------


def firing_pages(pages: Sequence[Page], incident_id: str) -> list[Page]:
    """The firing pages of one incident (escalations included)."""
    return [p for p in pages if p.status == "firing" and p.incident_id == incident_id]


def escalation_page(pages: Sequence[Page], incident_id: str, *, channel: str) -> Page | None:
    """The escalation message of ``incident_id`` on ``channel``, if it arrived."""
    for page in firing_pages(pages, incident_id):
        if page.escalation and page.channel == channel:
            return page
    return None


def resolved(pages: Sequence[Page], incident_id: str) -> bool:
    """Whether a resolved message of ``incident_id`` arrived."""
    return any(p.status == "resolved" and p.incident_id == incident_id for p in pages)


def lower_level_pages(pages: Sequence[Page], level: int) -> list[Page]:
    """Firing pages below ``level`` that are neither escalations nor test messages."""
    return [
        p
        for p in pages
        if p.status == "firing"
        and p.level is not None
        and p.level < level
        and not p.escalation
        and not p.test
    ]


def channels_with_test_message(pages: Sequence[Page]) -> set[str]:
    """The channels a daily check test message arrived on."""
    return {p.channel for p in pages if p.test}


# --- talking to the simulator and the receiver ---------------------------------------------


class DrillError(VoiceDriveError):
    """The simulator or the receiver refused a drill request (wrong token, gone)."""


class StepTimeout(VoiceDriveError):
    """A bounded wait of a step ran out."""

    def __init__(self, what: str, seconds: float) -> None:
        self.what = what
        self.seconds = seconds
        super().__init__(f"timed out after {seconds:g}s waiting for {what}")


class Http:
    """JSON and text over one session with a bearer token."""

    def __init__(self, session: aiohttp.ClientSession, base: str, token: str) -> None:
        self.session = session
        self._session = session
        self._base = base.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, body: object = None) -> tuple[int, str]:
        """One request; the status and the body text."""
        async with self._session.request(
            method, f"{self._base}{path}", json=body, headers=self._headers
        ) as resp:
            return resp.status, await resp.text()

    async def json(self, method: str, path: str, body: object = None) -> Any:
        """One request that must answer 200 with JSON."""
        status, text = await self.call(method, path, body)
        if status != 200:
            raise DrillError(f"{method} {self._base}{path}: HTTP {status} {text[:200]}")
        return json.loads(text)


@dataclass(frozen=True)
class DrillTimeouts:
    """Bounds of the waits (seconds)."""

    page: float = 120.0
    resolved: float = 120.0
    poll: float = 0.5
    # After a Level 4 page: how long lower-level pages are watched for (they must not come).
    settle: float = 15.0
    # Added to the receiver's own timers (escalation, watch) before a wait gives up.
    slack: float = 60.0
    # How long past its escalation time an acknowledged incident is watched (besides three
    # scheduler intervals).
    margin: float = 2.0


@dataclass
class StepResult:
    """What one step saw."""

    name: str
    ok: bool = False
    error: str = ""
    # Seconds from the fault to the first page, by what was paged ("level 2 api", ...).
    times: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class DrillReport:
    """Every step, the total time, and the incidents the drill followed."""

    steps: list[StepResult] = field(default_factory=list)
    seconds: float = 0.0
    incidents: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Every step passed."""
        return bool(self.steps) and all(step.ok for step in self.steps)


class Drill:
    """Runs the steps against the simulator's admin API and the receiver's API."""

    def __init__(
        self,
        *,
        admin_url: str,
        admin_token: str,
        receiver_url: str,
        receiver_token: str,
        watcher: PageWatcher,
        out: TextIO,
        timing: Timing,
        timeouts: DrillTimeouts | None = None,
        clock: Callable[[], float] = time.monotonic,
        alertmanager_url: str | None = None,
    ) -> None:
        self._alertmanager_url = alertmanager_url
        self._admin_url = admin_url.rstrip("/")
        self._admin_token = admin_token
        self._receiver_url = receiver_url
        self._receiver_token = receiver_token
        self._watcher = watcher
        self._out = out
        self._timing = timing
        self._timeouts = timeouts or DrillTimeouts()
        self._clock = clock
        self.pages: list[Page] = []
        self._components: dict[str, str] = {}
        self._since = 0.0
        self.report = DrillReport()

    def steps(self) -> dict[str, tuple[str, Callable[[StepResult], Awaitable[None]]]]:
        """Every step in order: key -> (name, coroutine function)."""
        return {
            "level2": ("level 2: escalation unless acknowledged", self.step_level2),
            "level3": ("level 3: database down", self.step_level3),
            "level4": ("level 4: system down, level 3 inhibited", self.step_level4),
            "record": ("incident record (Markdown)", self.step_record),
            "daily": ("daily check with test messages", self.step_daily_check),
        }

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[None]:
        """HTTP clients of the simulator and the receiver for the steps."""
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            self._sim = Http(session, self._admin_url, self._admin_token)
            self._rx = Http(session, self._receiver_url, self._receiver_token)
            yield

    async def run(self) -> DrillReport:
        """Every step in order; a step that fails does not stop the next."""
        return await self.run_steps(list(self.steps()))

    async def run_steps(self, keys: Sequence[str]) -> DrillReport:
        """The steps named by ``keys``, in that order, each bounded and reported."""
        started = self._clock()
        steps = self.steps()
        async with self.session():
            self._poll()  # pages from before the drill are not its own
            for key in keys:
                name, step = steps[key]
                result = StepResult(name)
                self.report.steps.append(result)
                self._say(f"\n== Drill: {name}")
                try:
                    await step(result)
                    result.ok = True
                except (StepTimeout, DrillError, aiohttp.ClientError, TimeoutError) as exc:
                    result.error = str(exc) or type(exc).__name__
                    self._say(f"   FAILED: {result.error}")
                finally:
                    await self._lift()
        self.report.seconds = self._clock() - started
        return self.report

    # --- the steps ---------------------------------------------------------------------------

    async def step_level2(self, result: StepResult) -> None:
        """Two Level 2 incidents: the acknowledged one stays, the other escalates to Level 3."""
        t = self._timeouts
        fault_at = await self._inject(API_PART_DOWN, NOTIFICATIONS_FAILING)
        api_id, notif_id = "", ""

        def both_paged() -> bool:
            nonlocal api_id, notif_id
            api_id = api_id or self._paged("api", 2, result, fault_at, "level 2 api")
            notif_id = notif_id or self._paged(
                "notifications", 2, result, fault_at, "level 2 notifications"
            )
            return bool(api_id and notif_id)

        await self._until(
            "level 2 pages of the API and the notification incidents", t.page, both_paged
        )
        self.report.incidents.update(escalated=api_id, acknowledged=notif_id)
        ack = await self._rx.json("POST", f"/api/incidents/{notif_id}/ack", {"by": "drill"})
        self._say(f"   acknowledged {notif_id} as 'drill' (status {ack.get('status')})")

        escalation_bound = self._timing.escalate_after + t.slack
        page = await self._until(
            f"the escalation of {api_id} to level 3 on the sms channel",
            escalation_bound,
            lambda: escalation_page(self.pages, api_id, channel="sms"),
        )
        if page is None:  # _until returns only what the check found
            raise StepTimeout("the escalation page", escalation_bound)
        opened = await self._opened_at(api_id)
        result.times["escalation to level 3"] = self._clock() - fault_at
        self._say(
            f"   {api_id} escalated to level {page.level} "
            f"{time.time() - opened:.0f}s after it opened (unacknowledged)"
        )
        await self._sim.call("PUT", "/api", {"endpoint": "/api/status"})
        self._say("   API fault lifted")

        # The acknowledged incident is watched past the moment it would have escalated.
        due = await self._opened_at(notif_id) + self._timing.escalate_after
        wait = due - time.time() + 3 * self._timing.scheduler_interval + t.margin
        if wait > 0:
            self._say(
                f"   watching {notif_id} for {wait:.0f}s, until just past its escalation time"
            )
            await self._watch(wait)
        incident = await self._rx.json("GET", f"/api/incidents/{notif_id}")
        if incident["level"] != 2 or any(p.escalation for p in firing_pages(self.pages, notif_id)):
            raise DrillError(f"acknowledged {notif_id} escalated (level {incident['level']})")
        result.notes.append(f"{notif_id} acknowledged: still level 2 after its escalation time")
        self._say(f"   {notif_id} is still level 2 ({incident['status']}): no escalation")
        await self._lift()
        self._say("   notification fault lifted")
        await self._until(
            f"resolved messages of {api_id} and {notif_id}",
            t.resolved,
            lambda: resolved(self.pages, api_id) and resolved(self.pages, notif_id),
        )
        self._say("   both resolved")

    async def step_level3(self, result: StepResult) -> None:
        """The database down pages Level 3 (SMS); meanwhile the escalated incident closes."""
        t = self._timeouts
        fault_at = await self._inject(DB_DOWN)
        db_id = await self._until(
            "a level 3 page of the database incident",
            t.page,
            lambda: self._paged("database", 3, result, fault_at, "level 3 database"),
        )
        if not [p for p in firing_pages(self.pages, db_id) if p.channel == "sms"]:
            await self._until(
                f"the sms page of {db_id}",
                t.page,
                lambda: [p for p in firing_pages(self.pages, db_id) if p.channel == "sms"],
            )
        await self._lift()
        self._say("   fault lifted")
        await self._until(
            f"the resolved message of {db_id}", t.resolved, lambda: resolved(self.pages, db_id)
        )
        self._say("   resolved")
        escalated = self.report.incidents.get("escalated")
        if escalated:
            bound = self._timing.watch + t.slack
            await self._until_closed(escalated, bound)
            result.notes.append(f"{escalated} closed after its recovery watch")

    async def step_level4(self, result: StepResult) -> None:
        """API and database down: Level 4 on the phone stand-in, no Level 3 page."""
        t = self._timeouts
        mark = len(self.pages)
        fault_at = await self._inject(API_DOWN, DB_DOWN)
        top_id = await self._until(
            "a level 4 page on the phone channel",
            t.page,
            lambda: self._paged("api", 4, result, fault_at, "level 4", channel="phone"),
        )
        self.report.incidents["system_down"] = top_id
        self._say(f"   watching {t.settle:g}s for level 3 pages (inhibited: none may come)")
        await self._watch(t.settle)
        lower = lower_level_pages(self.pages[mark:], 4)
        if lower:
            raise DrillError(
                "pages below level 4 during the outage: "
                + "; ".join(f"[{p.channel}] L{p.level} {p.summary}" for p in lower)
            )
        result.notes.append("no level 3 page during the level 4 outage")
        inhibited = await self._inhibited()
        if inhibited:
            names = ", ".join(inhibited)
            self._say(f"   Alertmanager holds back as inhibited: {names}")
            result.notes.append(f"inhibited in Alertmanager: {names}")
        await self._lift()
        self._say("   faults lifted")
        await self._until(
            f"the resolved message of {top_id}", t.resolved, lambda: resolved(self.pages, top_id)
        )
        self._say("   resolved")

    async def step_record(self, result: StepResult) -> None:
        """Print the P9 record of the escalated incident (or the first one there is)."""
        incident = self.report.incidents.get("escalated")
        if not incident:
            listed = await self._rx.json("GET", "/api/incidents")
            if not listed["incidents"]:
                raise DrillError("the receiver has no incident to show")
            incident = listed["incidents"][-1]["id"]
        status, text = await self._rx.call("GET", f"/api/incidents/{incident}/record.md")
        if status != 200:
            raise DrillError(f"record of {incident}: HTTP {status}")
        self._say(f"\n---- record of {incident} ----\n{text}")
        result.notes.append(f"record of {incident} printed")

    async def step_daily_check(self, result: StepResult) -> None:
        """Test messages on every channel, then the daily checklist (it must pass)."""
        sent = await self._rx.json("POST", "/api/daily-check/test-messages")
        wanted = set(sent["channels"])
        self._say(f"   test messages enqueued for {', '.join(sorted(wanted))}")
        started = self._clock()
        await self._until(
            "a test message on every channel",
            self._timeouts.page,
            lambda: wanted <= channels_with_test_message(self.pages),
        )
        result.times["test messages"] = self._clock() - started
        status, text = await self._rx.call("GET", "/api/daily-check?format=markdown")
        if status != 200:
            raise DrillError(f"daily check: HTTP {status}")
        self._say(f"\n---- daily check ----\n{text}")
        report = await self._rx.json("GET", "/api/daily-check")
        failed = [item["title"] for item in report["items"] if not item["ok"]]
        if failed:
            raise DrillError(f"daily check items not ok: {', '.join(failed)}")

    # --- helpers -----------------------------------------------------------------------------

    async def _inhibited(self) -> list[str]:
        """Names of the alerts Alertmanager has inhibited right now (empty when not asked)."""
        if self._alertmanager_url is None:
            return []
        am = Http(self._sim.session, self._alertmanager_url, "")
        alerts = await am.json("GET", "/api/v2/alerts")
        return sorted(
            {
                str(a["labels"].get("alertname"))
                for a in alerts
                if a.get("status", {}).get("inhibitedBy")
            }
        )

    async def _inject(self, *faults: Fault) -> float:
        for fault in faults:
            status, text = await self._sim.call("PUT", f"/{fault.kind}", dict(fault.body))
            if status != 200:
                raise DrillError(f"simulator refused the {fault.kind} fault: HTTP {status} {text}")
        names = ", ".join(f"{f.kind} {json.dumps(dict(f.body))}" for f in faults)
        self._say(f"   fault injected: {names}")
        self._since = self._clock()
        return self._since

    async def _lift(self) -> None:
        status, _ = await self._sim.call("DELETE", "")
        if status != 200:
            raise DrillError(f"simulator did not clear the faults: HTTP {status}")

    def _paged(
        self,
        component: str,
        level: int,
        result: StepResult,
        fault_at: float,
        label: str,
        *,
        channel: str | None = None,
    ) -> str:
        """The id of a paged incident of ``component`` at ``level`` (records the time)."""
        for page in self.pages:
            if page.status != "firing" or page.level != level or page.incident_id is None:
                continue
            if channel is not None and page.channel != channel:
                continue
            if self._components.get(page.incident_id) != component:
                continue
            if label not in result.times:
                result.times[label] = self._clock() - fault_at
                self._say(f"   {label}: paged {result.times[label]:.1f}s after the fault")
            return page.incident_id
        return ""

    async def _opened_at(self, incident_id: str) -> float:
        incident = await self._rx.json("GET", f"/api/incidents/{incident_id}")
        return datetime.fromisoformat(str(incident["opened_at"]).replace("Z", "+00:00")).timestamp()

    async def _until_closed(self, incident_id: str, bound: float) -> None:
        async def closed() -> bool:
            incident = await self._rx.json("GET", f"/api/incidents/{incident_id}")
            return bool(incident["status"] == "closed")

        deadline = self._clock() + bound
        while not await closed():
            if self._clock() >= deadline:
                raise StepTimeout(f"{incident_id} to close after its watch", bound)
            await self._sleep_polling()
        self._say(f"   {incident_id} closed after its {self._timing.watch:g}s recovery watch")

    async def _until(self, what: str, bound: float, check: Callable[[], T]) -> T:
        """Poll the channels until ``check`` gives something truthy (bounded)."""
        deadline = self._clock() + bound
        while True:
            await self._poll_async()
            found = check()
            if found:
                return found
            if self._clock() >= deadline:
                raise StepTimeout(what, bound)
            await asyncio.sleep(self._timeouts.poll)

    async def _watch(self, seconds: float) -> None:
        deadline = self._clock() + seconds
        while self._clock() < deadline:
            await self._sleep_polling()

    async def _sleep_polling(self) -> None:
        await asyncio.sleep(self._timeouts.poll)
        await self._poll_async()

    async def _poll_async(self) -> None:
        new = self._poll()
        for page in new:
            if page.incident_id and page.incident_id not in self._components:
                status, text = await self._rx.call("GET", f"/api/incidents/{page.incident_id}")
                if status == 200:
                    self._components[page.incident_id] = str(json.loads(text)["component"])

    def _poll(self) -> list[Page]:
        new = self._watcher.poll()
        for page in new:
            self.pages.append(page)
            self._show(page)
        return new

    def _show(self, page: Page) -> None:
        level = f"L{page.level}" if page.level is not None else "L?"
        elapsed = self._clock() - self._since if self._since else 0.0
        incident = f" {page.incident_id}" if page.incident_id else ""
        self._say(
            f"   +{elapsed:5.1f}s -> [{page.channel}] {page.status} {level}{incident}: "
            f"{page.summary}"
        )

    def _say(self, text: str) -> None:
        print(text, file=self._out, flush=True)


def summary(report: DrillReport) -> str:
    """One line per step, the fault-to-page times, and the total."""
    lines = ["\nDrill summary:"]
    for step in report.steps:
        state = "ok" if step.ok else "FAILED"
        lines.append(f"  {state:6}  {step.name}" + (f"  ({step.error})" if step.error else ""))
        for label, seconds in step.times.items():
            lines.append(f"            {label}: {seconds:.1f}s")
        for note in step.notes:
            lines.append(f"            {note}")
    verdict = "passed" if report.ok else "FAILED"
    lines.append(f"  drill {verdict} in {report.seconds:.0f}s")
    return "\n".join(lines)
