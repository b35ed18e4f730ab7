"""From the webhook journal to incidents and the outbox, after the 2xx went out.

The webhook only authenticates, validates and journals (webhook.py), so Alertmanager gets its
answer in the time of one insert. This loop does the rest in journal order: levels, routing,
rendering and the ingest transaction, which also deletes the journal row, so a notification is
processed exactly once even across a crash (the journal row survives until then).

Acknowledgements come first. While webhooks are being answered (now or a moment ago) the loop
starts one notification per ``YIELD_SLICE`` after a small burst, and one per ``FLOOD_SLICE``
while a flood of them waits for answers: a flood cannot starve Alertmanager into timeouts and
retries, and pages still go out at a bounded minimum rate. Otherwise it runs flat out, several
groups at a time.

Urgent notifications (Level 3 and 4: SMS and phone) do not wait behind a backlog: each pass
first takes the groups with an urgent row waiting, with their earlier rows so a group keeps its
order, paced as if there were no flood; a pass over the rest stops starting notifications as
soon as an urgent one is journaled.

Replicas on one PostgreSQL each pass over the rows they accepted, and a load balancer spreads a
group's notifications over them: before a pass processes its rows, it takes along the rows of
its groups that another replica journaled earlier and has not processed yet (one query per
pass), so a group keeps its order across replicas too.
"""

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from aiohttp import web

from voicedrive_common.clock import sleep_until_stopped, sleep_until_woken
from voicedrive_receiver.app import Services
from voicedrive_receiver.errors import StoreRejected, StoreUnavailable
from voicedrive_receiver.metrics import JournalSnapshot
from voicedrive_receiver.models import parse_body
from voicedrive_receiver.planning import build_batch, make_planner
from voicedrive_receiver.store.base import IngestBatch, incident_id_for
from voicedrive_receiver.store.journal import JournalEntry
from voicedrive_receiver.store.schema import is_urgent

log = logging.getLogger(__name__)

# While a webhook is being answered, or was less than ACTIVE_WINDOW seconds ago, processing
# starts BURST notifications at once and then one per YIELD_SLICE: at most 100/s, about a
# sixth of a core, so a lone notification never waits and a steady stream of up to 100/s is
# processed as it comes. Any webhook counts: pacing only from 4 at once let processing run
# unpaced beside 200 webhooks/s and their p99 rose from 5-15 ms to 150-1,000 ms (bench).
YIELD_SLICE = 0.01
ACTIVE_WINDOW = 0.05
BURST = 8
# While FLOOD or more webhooks wait for their answer at once, or did a moment ago, the loop is
# full of them (a storm's flush, or peers replaying a backlog): one start per FLOOD_SLICE,
# 25/s. That still outruns the channels (Slack takes about one message per second per channel,
# and each notification is at least one message), and gives the webhooks the loop time that
# processing and its deliveries took: on PostgreSQL at 32 webhooks at once, 38 % -> 55 % of
# the bare handler's rate (A/B). 200 webhooks/s keep about one in flight: paced at 100/s.
FLOOD = 16
FLOOD_SLICE = 0.04
# Journal rows read per query.
BATCH = 64
# Groups processed at the same time (one notification each): their transactions share group
# commits on SQLite and use the pool on PostgreSQL instead of waiting for one another.
CONCURRENCY = 16
# How often the journal gauges are re-read, and the wait before retrying an unavailable store.
REFRESH_INTERVAL = 1.0
# Groups whose last incident, and notifications whose identity, the processor remembers (a few
# dozen bytes each).
MAX_HINTS = 10_000

Outcome = Literal["stored", "duplicate", "elsewhere", "failed"]


@dataclass(frozen=True)
class Processed:
    """What became of one journaled notification."""

    entry_id: int
    outcome: Outcome
    incident_id: str | None = None
    enqueued: int = 0


class Processor:
    """Drains the journal rows this instance owns (and takes over abandoned ones)."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        # Webhook handlers running now, and when the last one began (event loop time).
        self.acks_in_flight = 0
        self.last_ack = float("-inf")
        # When a webhook last began with FLOOD or more in flight (event loop time).
        self.last_flood = float("-inf")
        # This instance's journaled, unprocessed notifications (the webhook's 503 guard).
        self.backlog = 0
        self._wake = asyncio.Event()
        # Whether urgent rows may be waiting: at start (rows from before a restart), when one
        # is journaled here, and at each full scan (a dead peer's); cleared when none are found.
        self._urgent_check = True
        # Urgent notifications journaled here so far: a pass over the backlog stops when it
        # changes.
        self._urgent_arrivals = 0
        # The last urgent pass failed: the next round is a pass over the backlog, so one group
        # the store keeps refusing cannot hold every other one.
        self._urgent_failed = False
        self._pace = asyncio.Lock()
        # Token bucket of processing starts while webhooks are active: (tokens, refilled at).
        self._tokens = float(BURST)
        self._refilled = float("-inf")
        self._last_refresh = float("-inf")
        # Journal id below which this instance has nothing left to do, so a query never walks
        # the rows it deleted (PostgreSQL keeps them in the index until vacuumed).
        self._cursor = 0
        self._full_scan_at = float("-inf")
        # group key -> (incident id, level) at its last ingest: a guess that lets rendering
        # happen before the transaction (the transaction checks it, see OutboxPlanner).
        self._hints: dict[str, tuple[str, int]] = {}
        # Notification identities already in the store (stored here, found duplicate, or
        # processed by a peer): a resend of one is a duplicate, which sends nothing, so it is
        # not rendered ahead. Also a guess: the transaction renders when it is wrong.
        self._stored: set[str] = set()
        # group key -> (fingerprint, start) of the alerts this processor stored as firing: a
        # firing notification with nothing new among them (Alertmanager resends a group when
        # part of it resolves) pages nobody, so it is not rendered ahead either. A guess too.
        self._firing: dict[str, set[tuple[str, float]]] = {}

    @property
    def takeover_after(self) -> float:
        """Age at which another instance's unprocessed rows are taken over."""
        return self.svc.config.outbox.lease

    @property
    def _urgent_due(self) -> bool:
        """Whether the next pass is the urgent one."""
        return self._urgent_check and not self._urgent_failed

    def accepted(self, level: int | None = None) -> None:
        """A webhook journaled a notification (``level``: of its firing alerts): count it and
        wake the loop."""
        self.backlog += 1
        if is_urgent(level):
            self._urgent_check = True
            self._urgent_arrivals += 1
        self._wake.set()

    async def process_pending(self, *, limit: int = BATCH) -> list[Processed]:
        """Process up to ``limit`` journaled notifications: urgent groups first, else the
        oldest; a pass over the oldest ends early when an urgent one arrives."""
        svc = self.svc
        now = svc.clock.now().timestamp()
        # Counted before any query: one journaled while they run also stops the backlog's pass.
        arrivals = self._urgent_arrivals
        if now - self._full_scan_at >= self.takeover_after / 2:
            # Rows skipped below the cursor (a live peer's, since abandoned) are found again.
            self._cursor, self._full_scan_at = 0, now
            self._urgent_check = True
        if self._urgent_due:
            self._urgent_check = False  # an urgent row journaled from here on sets it again
            try:
                entries = await self._urgent(now, limit)
            except Exception:
                self._urgent_check = True  # still to be looked for
                raise
            if entries:
                self._urgent_check = True  # more may wait beyond ``limit``
                try:
                    chained, outside = await self._with_earlier(entries, limit)
                    done = await self._process_chains(chained, stop_unless=None, outside=outside)
                except Exception:
                    self._urgent_failed = True
                    raise
                if done:
                    return done
                # Nothing could start (every row waits for earlier ones left unread): the
                # backlog's pass now, or the next round would be this one again.
        self._urgent_failed = False
        entries = await self._pending(now, limit)
        if not entries and self._cursor:
            self._cursor, self._full_scan_at = 0, now
            entries = await self._pending(now, limit)
        if not entries:
            self.backlog = 0
        chained, outside = await self._with_earlier(entries, limit)
        done = await self._process_chains(chained, stop_unless=arrivals, outside=outside)
        if entries:
            # Up to the first row left for the next pass (one stopped for an urgent arrival, or
            # waiting for a peer's earlier rows of its group). Only this pass's own rows: the
            # cursor walks the rows ``pending`` chooses, never a peer's.
            processed = {p.entry_id for p in done}
            left = [e.id for e in entries if e.id not in processed]
            self._cursor = left[0] - 1 if left else entries[-1].id
        return done

    async def _with_earlier(
        self, entries: list[JournalEntry], limit: int
    ) -> tuple[list[JournalEntry], frozenset[int]]:
        """``entries`` with their groups' earlier rows outside them (a live peer's) merged in,
        in id order, and those rows' ids. Entries that would overtake a peer's row the query's
        limit left unread are left out: they wait for a later pass."""
        earlier = await self.svc.store.journal.earlier(entries, limit=limit)
        if not earlier.entries:  # a cut is always of a group some rows were read of
            return entries, frozenset()
        cut = earlier.cut
        kept = [e for e in entries if e.group_key not in cut or e.id < cut[e.group_key]]
        chained = sorted([*earlier.entries, *kept], key=lambda e: e.id)
        return chained, frozenset(e.id for e in earlier.entries)

    async def _process_chains(
        self,
        entries: list[JournalEntry],
        *,
        stop_unless: int | None,
        outside: frozenset[int] = frozenset(),
    ) -> list[Processed]:
        # One chain per group, in journal order; chains run side by side. Outside the urgent
        # pass (``stop_unless`` None) a chain starts nothing more once an urgent notification
        # arrived (see _yield_to_acks).
        chains: dict[str, list[JournalEntry]] = {}
        for entry in entries:
            chains.setdefault(entry.group_key, []).append(entry)
        done: dict[int, Processed] = {}
        slots = asyncio.Semaphore(CONCURRENCY)

        async def chain(group: list[JournalEntry]) -> None:
            async with slots:
                for entry in group:
                    if not await self._yield_to_acks(stop_unless=stop_unless):
                        return
                    done[entry.id] = await self.process(entry)
                    if entry.id not in outside:  # accepted() counted only this instance's
                        self.backlog = max(0, self.backlog - 1)

        results = await asyncio.gather(
            *(chain(group) for group in chains.values()), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                self._cursor = 0
                raise result  # StoreUnavailable: the rest stays journaled for the next round
        return [done[e.id] for e in entries if e.id in done]

    async def _urgent(self, now: float, limit: int) -> list[JournalEntry]:
        return await self.svc.store.journal.urgent(
            owner=self.svc.instance, now=now, takeover_after=self.takeover_after, limit=limit
        )

    async def _pending(self, now: float, limit: int) -> list[JournalEntry]:
        return await self.svc.store.journal.pending(
            owner=self.svc.instance,
            now=now,
            takeover_after=self.takeover_after,
            limit=limit,
            after=self._cursor,
        )

    def ack_started(self) -> None:
        """A webhook handler began (the webhook calls ``ack_finished`` when it ends)."""
        self.acks_in_flight += 1
        self.last_ack = asyncio.get_running_loop().time()
        if self.acks_in_flight >= FLOOD:
            self.last_flood = self.last_ack

    def ack_finished(self) -> None:
        """A webhook handler ended."""
        self.acks_in_flight -= 1

    def webhooks_active(self) -> bool:
        """Whether webhooks are being answered now or were a moment ago."""
        recent = asyncio.get_running_loop().time() - self.last_ack < ACTIVE_WINDOW
        return self.acks_in_flight > 0 or recent

    def start_spacing(self, *, urgent: bool = False) -> float | None:
        """Seconds between processing starts now (``urgent``: of the urgent pass, which no
        flood slows); None: no webhook to yield to."""
        flood_ago = asyncio.get_running_loop().time() - self.last_flood
        flood = self.acks_in_flight >= FLOOD or flood_ago < ACTIVE_WINDOW
        if flood and not urgent:
            return FLOOD_SLICE  # a flood now or a moment ago: its in-flight count wavers
        return YIELD_SLICE if self.webhooks_active() else None

    async def _yield_to_acks(self, *, stop_unless: int | None) -> bool:
        """Wait for this chain's next start; False: stop, an urgent notification arrived (the
        count of arrivals is no longer ``stop_unless``). None: the urgent pass itself."""
        urgent = stop_unless is None
        async with self._pace:  # the bucket is shared by all chains
            loop = asyncio.get_running_loop()
            while (spacing := self.start_spacing(urgent=urgent)) is not None:
                if not urgent and self._urgent_arrivals != stop_unless:
                    # Checked on every wake-up: chains queued here for a start would otherwise
                    # each wait for a token first (16 chains at 25/s: 0.64 s).
                    return False
                now = loop.time()
                self._tokens = min(BURST, self._tokens + (now - self._refilled) / spacing)
                self._refilled = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    break
                await asyncio.sleep((1 - self._tokens) * spacing)
        await asyncio.sleep(0)
        return urgent or self._urgent_arrivals == stop_unless

    async def process(self, entry: JournalEntry) -> Processed:
        """Process one notification; StoreUnavailable leaves it in the journal for later."""
        svc = self.svc
        try:
            notification = parse_body(
                entry.payload.encode("utf-8"), now=_at(entry.received_at, svc)
            )
            plan = build_batch(
                notification, entry.payload, svc.config, received_at=entry.received_at
            )
            planner = make_planner(notification, plan, svc.config, svc.render)
            batch = plan.batch
            hint = self._hints.get(batch.group_key)
            if batch.identity in self._stored:
                pass  # most likely a duplicate: nothing to send, nothing to render ahead
            elif batch.status == "firing" and self._nothing_new(batch):
                pass  # most likely nothing newly firing: nothing to send either
            elif hint is not None:
                planner.prerender(*hint)
            elif batch.status == "firing":
                # Most likely a new incident, whose id is derived from this very notification.
                planner.prerender(
                    incident_id_for(batch.group_key, batch.identity, batch.received_at),
                    batch.level,
                )
            # A resolved one without a hint is not rendered ahead: it opens no incident, and the
            # group's open one was opened by another notification, so no guess could be right.
            result = await svc.store.ingest(batch, planner, journal_id=entry.id)
        except StoreRejected as exc:
            # The same data is refused every time: retried, it would block its group forever.
            return await self._failed(entry, exc)
        except StoreUnavailable:
            raise
        except Exception as exc:
            # Validated at the webhook, so this is a receiver bug.
            return await self._failed(entry, exc)

        if len(self._stored) >= MAX_HINTS:
            self._stored.clear()  # a guess cache as well: losing it only costs renderings
        self._stored.add(batch.identity)
        if result.already_processed:
            return self._count(entry, Processed(entry.id, "elsewhere"))
        if result.duplicate:
            svc.metrics.duplicates.inc()
            log.info(
                "duplicate notification suppressed",
                extra={"group_key": batch.group_key, "incident": result.incident_id},
            )
            return self._count(entry, Processed(entry.id, "duplicate", result.incident_id))

        if result.incident_id is not None and result.level is not None:
            if len(self._hints) >= MAX_HINTS:
                self._hints.clear()  # a guess cache: losing it only costs renderings
            self._hints[batch.group_key] = (result.incident_id, result.level)
        self._remember_firing(batch)
        for alert, decision in zip(notification.alerts, plan.decisions, strict=True):
            svc.metrics.alerts.labels(level=str(decision.level), status=alert.status).inc()
            if decision.source == "default":
                svc.metrics.level_defaulted.inc()
                log.warning(
                    "alert without a valid level and no matching rule: default level used",
                    extra={
                        "alertname": alert.labels.get("alertname", ""),
                        "fingerprint": alert.fingerprint,
                        "alert_level": decision.level,
                    },
                )
        for channel in result.channels:
            svc.worker.wake(channel)
        log.info(
            "notification stored",
            extra={
                "group_key": batch.group_key,
                "status": notification.status,
                "alert_level": batch.level,
                "incident": result.incident_id,
                "enqueued": result.enqueued,
            },
        )
        return self._count(
            entry, Processed(entry.id, "stored", result.incident_id, result.enqueued)
        )

    def _nothing_new(self, batch: IngestBatch) -> bool:
        seen = self._firing.get(batch.group_key)
        if not seen:
            return False
        return all(
            (a.fingerprint, a.starts_at) in seen for a in batch.alerts if a.status == "firing"
        )

    def _remember_firing(self, batch: IngestBatch) -> None:
        # Mirrors what the ingest wrote to the group's alerts (their status, by fingerprint
        # and start); a peer's writes are not seen, which only makes the guess wrong.
        seen = self._firing.get(batch.group_key)
        if seen is None:
            if len(self._firing) >= MAX_HINTS:
                self._firing.clear()
            seen = self._firing[batch.group_key] = set()
        for alert in batch.alerts:
            if alert.status == "firing":
                seen.add((alert.fingerprint, alert.starts_at))
            else:
                seen.discard((alert.fingerprint, alert.starts_at))

    async def _failed(self, entry: JournalEntry, exc: Exception) -> Processed:
        # Keep the row and the reason (the gauge and the log show it), go on with the others.
        svc = self.svc
        log.exception(
            "journaled notification could not be processed; kept in the journal",
            extra={"journal_id": entry.id, "err": type(exc).__name__},
        )
        await svc.store.journal.fail(
            entry.id, now=svc.clock.now().timestamp(), error=f"{type(exc).__name__}: {exc}"
        )
        return self._count(entry, Processed(entry.id, "failed"))

    def _count(self, entry: JournalEntry, processed: Processed) -> Processed:
        metrics = self.svc.metrics
        metrics.processed.labels(outcome=processed.outcome).inc()
        delay = self.svc.clock.now().timestamp() - entry.received_at
        metrics.processing_delay.observe(max(0.0, delay))
        return processed

    async def refresh_gauges(self) -> None:
        """Re-read the journal gauges."""
        stats = await self.svc.store.journal.stats()
        # The count kept between refreshes starts from the store: rows journaled before a
        # restart (or by a peer) count towards server.max_backlog too.
        self.backlog = stats.pending
        now = self.svc.clock.now().timestamp()
        oldest = stats.oldest_received_at
        self.svc.metrics.journal = JournalSnapshot(
            pending=stats.pending,
            oldest_age=max(0.0, now - oldest) if oldest is not None else 0.0,
            failed=stats.failed,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Process until ``stop`` is set; an unavailable store or a bug is retried, never fatal."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            self._wake.clear()
            failed = False
            done: list[Processed] = []
            try:
                done = await self.process_pending()
            except StoreUnavailable as exc:
                log.warning("journal processing: store unavailable", extra={"err": str(exc)})
                failed = True
            except Exception as exc:
                # A bug here must not end the loop: the webhook would go on answering 200
                # for notifications nobody processes. Logged, retried after a pause.
                log.exception("journal processing failed", extra={"err": type(exc).__name__})
                failed = True
            # Also when processing failed: a store that still answers reads (a full disk, a
            # read-only standby) must show the backlog growing, not the last good snapshot.
            if loop.time() - self._last_refresh >= REFRESH_INTERVAL:
                self._last_refresh = loop.time()
                with contextlib.suppress(StoreUnavailable):
                    await self.refresh_gauges()
            if failed:
                await sleep_until_stopped(stop, REFRESH_INTERVAL)
            elif not done:
                # Even with the urgent pass due: one that started nothing would start nothing
                # again at once (an urgent arrival sets the wake event, so it is not delayed).
                await sleep_until_woken(self._wake, stop, REFRESH_INTERVAL)


PROCESSOR = web.AppKey("processor", Processor)


def _at(received_at: float, svc: Services) -> datetime:
    # Validated against the clock of its receipt: a notification that was acceptable then
    # stays acceptable however long it waited.
    return datetime.fromtimestamp(received_at, svc.clock.now().tzinfo or UTC)
