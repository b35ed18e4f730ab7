"""The fire drill: one fault per level through the simulator, each page shown as it arrives.

A step injects its faults, waits (bounded) for a firing page of its level on the receiver's
channels (the console channel's JSON lines in the file outbox, and the mail catcher's files),
lifts the faults and waits for the resolved page. At the end the incident records are printed.
The rules keep their production ``for:`` durations, so a step takes a few minutes.
"""

import asyncio
import email
import email.policy
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import aiohttp

from voicedrive_common.errors import VoiceDriveError


@dataclass(frozen=True)
class Fault:
    """One admin API call: ``PUT /admin/faults/<kind>`` with ``body``."""

    kind: str
    body: Mapping[str, object]


@dataclass(frozen=True)
class DrillStep:
    """A fault scenario and the level (P2) its page must carry."""

    level: int
    title: str
    faults: tuple[Fault, ...]


STEPS: tuple[DrillStep, ...] = (
    DrillStep(
        level=2,
        title="part of the functions stopped: /api/status answers 503",
        faults=(Fault("api", {"endpoint": "/api/status", "status": 503}),),
    ),
    DrillStep(
        level=3,
        title="the database is down (proxy cuts and refuses connections)",
        faults=(Fault("db", {"down": True}),),
    ),
    DrillStep(
        level=4,
        title="the whole system is down: API listener closed and database down",
        faults=(Fault("api", {"endpoint": "*", "down": True}), Fault("db", {"down": True})),
    ),
)


@dataclass(frozen=True)
class Page:
    """One message the receiver sent, as seen on a channel."""

    channel: str
    status: str
    level: int | None
    summary: str
    incident_id: str | None = None


_LEVEL = re.compile(r"(?:レベル|Level\s*)([1-4])", re.IGNORECASE)
_RESOLVED = re.compile(r"\[(?:解決|resolved)\]", re.IGNORECASE)


class PageWatcher:
    """Reads pages that arrived since the last poll from the file outbox and the mail folder."""

    def __init__(self, *, outbox: Path, mail_dir: Path) -> None:
        self._outbox = outbox
        self._mail_dir = mail_dir
        self._offset = 0
        self._seen_mail: set[str] = set()

    def poll(self) -> list[Page]:
        """New pages, oldest first."""
        return self._console() + self._mails()

    def _console(self) -> list[Page]:
        try:
            with self._outbox.open("rb") as source:
                source.seek(self._offset)
                data = source.read()
        except FileNotFoundError:
            return []
        # A line still being written has no newline yet: leave it for the next poll.
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        pages = []
        for line in complete.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if not isinstance(entry, dict):
                continue
            text = str(entry.get("text") or entry.get("subject") or "")
            level = entry.get("level")
            pages.append(
                Page(
                    channel=str(entry.get("channel", "console")),
                    status=str(entry.get("status", "firing")),
                    level=level if isinstance(level, int) else None,
                    summary=text.splitlines()[0] if text else "",
                    incident_id=entry.get("incident_id"),
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
            match = _LEVEL.search(subject)
            pages.append(
                Page(
                    channel="email",
                    status="resolved" if _RESOLVED.search(subject) else "firing",
                    level=int(match.group(1)) if match else None,
                    summary=subject,
                )
            )
        return pages


@dataclass(frozen=True)
class DrillTimeouts:
    """Bounds of one step (seconds)."""

    page: float = 600.0
    resolved: float = 420.0
    poll: float = 1.0


@dataclass
class StepResult:
    """What one step saw."""

    step: DrillStep
    pages: list[Page] = field(default_factory=list)
    seconds_to_page: float | None = None
    resolved: bool = False

    @property
    def ok(self) -> bool:
        """A page of the step's level arrived and was resolved."""
        return self.seconds_to_page is not None and self.resolved


class Drill:
    """Runs the steps against the simulator's admin API and watches the channels."""

    def __init__(
        self,
        *,
        admin_url: str,
        admin_token: str,
        watcher: PageWatcher,
        out: TextIO,
        timeouts: DrillTimeouts | None = None,
    ) -> None:
        self._admin = admin_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {admin_token}"}
        self._watcher = watcher
        self._out = out
        self._timeouts = timeouts or DrillTimeouts()

    async def run(self, steps: Sequence[DrillStep] = STEPS) -> list[StepResult]:
        """Every step in order; a step that fails does not stop the next."""
        return [await self.run_step(step) for step in steps]

    async def run_step(self, step: DrillStep) -> StepResult:
        """Inject, wait for the page, lift, wait for the resolved page; faults never linger."""
        result = StepResult(step)
        loop = asyncio.get_running_loop()
        self._say(f"\n== Drill, level {step.level}: {step.title}")
        self._watcher.poll()  # pages of earlier steps are not this step's
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            try:
                for fault in step.faults:
                    await self._put(session, fault)
                started = loop.time()
                self._say(f"   fault injected; waiting up to {self._timeouts.page:g}s for the page")
                incidents = await self._wait(result, firing_level=step.level)
                if incidents is not None:
                    result.seconds_to_page = loop.time() - started
                    self._say(f"   paged after {result.seconds_to_page:.0f}s")
            finally:
                await self._clear(session)
            if result.seconds_to_page is None:
                self._say(f"   FAILED: no level {step.level} page in time")
                return result
            self._say(f"   fault lifted; waiting up to {self._timeouts.resolved:g}s for resolution")
            result.resolved = await self._wait(result, resolved_of=incidents) is not None
            self._say("   resolved" if result.resolved else "   FAILED: no resolved page in time")
        return result

    async def _wait(
        self,
        result: StepResult,
        *,
        firing_level: int | None = None,
        resolved_of: set[str] | None = None,
    ) -> set[str] | None:
        """Poll the channels until the wanted page arrives; the incident ids seen, or None."""
        loop = asyncio.get_running_loop()
        bound = self._timeouts.page if firing_level is not None else self._timeouts.resolved
        deadline = loop.time() + bound
        incidents: set[str] = set()
        while True:
            matched = False
            # Show the whole batch: a console line and a mail often arrive in the same poll.
            for page in self._watcher.poll():
                result.pages.append(page)
                self._show(page)
                if firing_level is not None and is_page_of_level(page, firing_level):
                    matched = True
                    if page.incident_id:
                        incidents.add(page.incident_id)
                if resolved_of is not None and resolves(page, resolved_of):
                    matched = True
            if matched:
                return incidents if firing_level is not None else resolved_of
            if loop.time() >= deadline:
                return None
            await asyncio.sleep(self._timeouts.poll)

    async def _put(self, session: aiohttp.ClientSession, fault: Fault) -> None:
        url = f"{self._admin}/{fault.kind}"
        async with session.put(url, json=dict(fault.body), headers=self._headers) as resp:
            if resp.status != 200:
                raise DrillError(f"simulator refused the {fault.kind} fault: HTTP {resp.status}")

    async def _clear(self, session: aiohttp.ClientSession) -> None:
        async with session.delete(self._admin, headers=self._headers) as resp:
            if resp.status != 200:
                raise DrillError(f"simulator did not clear the faults: HTTP {resp.status}")

    def _show(self, page: Page) -> None:
        level = f"L{page.level}" if page.level is not None else "L?"
        self._say(f"   -> [{page.channel}] {page.status} {level}: {page.summary}")

    def _say(self, text: str) -> None:
        print(text, file=self._out, flush=True)


def is_page_of_level(page: Page, level: int) -> bool:
    """Whether ``page`` is a firing page of ``level``."""
    return page.status == "firing" and page.level == level


def resolves(page: Page, incidents: set[str]) -> bool:
    """Whether ``page`` resolves one of ``incidents`` (any, when their ids are unknown)."""
    return page.status == "resolved" and (not incidents or page.incident_id in incidents)


class DrillError(VoiceDriveError):
    """The simulator refused a drill request (wrong token, simulator gone)."""


async def print_records(*, receiver_url: str, token: str, out: TextIO) -> int:
    """Print every incident's record (Markdown) from the receiver; the number printed."""
    headers = {"Authorization": f"Bearer {token}"}
    base = receiver_url.rstrip("/")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async with session.get(f"{base}/api/incidents", headers=headers) as resp:
            if resp.status != 200:
                print(f"incidents unavailable: HTTP {resp.status}", file=out, flush=True)
                return 0
            incidents = (await resp.json())["incidents"]
        for incident in reversed(incidents):  # oldest first, as they happened
            url = f"{base}/api/incidents/{incident['id']}/record.md"
            async with session.get(url, headers=headers) as resp:
                text = await resp.text() if resp.status == 200 else json.dumps(incident)
            print(f"\n---- {incident['id']} ----\n{text}", file=out, flush=True)
    return len(incidents)


def summary(results: Sequence[StepResult]) -> str:
    """One line per step: level, outcome, time from fault to first page."""
    lines = ["\nDrill summary (fault to first page):"]
    for result in results:
        took = f"{result.seconds_to_page:.0f}s" if result.seconds_to_page is not None else "-"
        state = "ok" if result.ok else "FAILED"
        lines.append(f"  level {result.step.level}  {state:6}  {took:>5}  {result.step.title}")
    return "\n".join(lines)
