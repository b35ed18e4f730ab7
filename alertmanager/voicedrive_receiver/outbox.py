"""The delivery worker: claims outbox rows per channel, sends, retries, dead-letters.

Each channel has its own loop, so a throttled or failing Slack never holds up SMS or phone.
Every claim holds a lease; a message whose sender died is claimed again once the lease runs
out. Such a row is *in doubt* (as is one whose send timed out locally): the upstream may have
accepted it before the outcome was stored. Before resending it the worker asks a channel that
can read its upstream back (``Reconciler``: Slack Web API, Twilio SMS) whether it arrived; if
so the row is marked delivered without sending, which makes those channels exactly once. The
others (phone calls, email, the generic webhook, Slack incoming webhooks) stay at least once:
a crash at that moment can repeat the messages in flight, never more.
"""

import asyncio
import logging
import random
from collections.abc import Mapping

from voicedrive_common.clock import Clock, sleep_until_stopped, sleep_until_woken
from voicedrive_common.secrets import Secret
from voicedrive_receiver.channels.base import (
    Channel,
    DeliveryResult,
    OutboundMessage,
    Recipient,
    Reconciler,
    RenderedMessage,
)
from voicedrive_receiver.config import ReceiverConfig, ResolvedSecrets
from voicedrive_receiver.errors import StoreUnavailable
from voicedrive_receiver.identity import delivery_id, pair_key
from voicedrive_receiver.metrics import ReceiverMetrics, StoreSnapshot
from voicedrive_receiver.planning import rendered_from_json, rendered_to_json
from voicedrive_receiver.routing import audience_contacts, ownership
from voicedrive_receiver.store.base import NewOutboxRow, OutboxRow, Store

log = logging.getLogger(__name__)

DEAD_LETTER_TEXT = {
    "ja": "【配信失敗】{channel} 宛 ({contact}) のレベル{level}通知を{attempts}回試行しても"
    "送れませんでした。インシデント {incident}。最後のエラー: {error}",
    "en": "[delivery failed] Level {level} message to {contact} via {channel} failed after "
    "{attempts} attempts. Incident {incident}. Last error: {error}",
}


def backoff_delay(
    attempts: int, *, base: float, maximum: float, jitter: float, rng: random.Random
) -> float:
    """Seconds before the next try after ``attempts`` failures: exponential, capped, jittered."""
    delay = min(maximum, base * (2.0 ** max(0, attempts - 1)))
    return max(0.0, delay * (1.0 + jitter * (2.0 * rng.random() - 1.0)))


class OutboxWorker:
    """Delivers outbox rows through the configured channels."""

    def __init__(
        self,
        *,
        store: Store,
        channels: Mapping[str, Channel],
        config: ReceiverConfig,
        secrets: ResolvedSecrets,
        metrics: ReceiverMetrics,
        clock: Clock,
        rng: random.Random | None = None,
        owner: str = "receiver",
    ) -> None:
        self.store = store
        self.channels = dict(channels)
        self.config = config
        self.secrets = secrets
        self.metrics = metrics
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.owner = owner
        self._wake = {name: asyncio.Event() for name in self.channels}
        self._paused_until: dict[str, float] = {}

    def wake(self, channel: str) -> None:
        """Tell a channel loop that new rows are due now."""
        event = self._wake.get(channel)
        if event is not None:
            event.set()

    def paused_until(self, channel: str) -> float:
        """UNIX time until which a channel is throttled (0 when it is not)."""
        return self._paused_until.get(channel, 0.0)

    def _now(self) -> float:
        return self.clock.now().timestamp()

    async def run_channel_once(self, channel: str) -> int:
        """Claim the channel's due rows and deliver them concurrently; the count handled."""
        now = self._now()
        if self._paused_until.get(channel, 0.0) > now:
            return 0
        rows = await self.store.claim(
            channel,
            now=now,
            limit=self.config.outbox.concurrency,
            lease=self.config.outbox.lease,
            owner=self.owner,
        )
        if rows:
            await asyncio.gather(*(self._deliver(row) for row in rows))
        return len(rows)

    async def _deliver(self, row: OutboxRow) -> None:
        channel = self.channels.get(row.channel)
        if channel is None:
            await self._dead(row, f"channel {row.channel!r} is not configured")
            return
        message = OutboundMessage(
            delivery_id=row.delivery_id,
            channel=row.channel,
            recipient=self._recipient(row),
            status="resolved" if row.status == "resolved" else "firing",
            level=row.level,
            incident_id=row.incident_id or "",
            rendered=rendered_from_json(row.rendered),
        )
        if row.in_doubt and self.config.outbox.reconcile and isinstance(channel, Reconciler):
            found = await self._reconcile(channel, row, message)
            if found is not None:
                await self._reconciled(row, found)
                return
        try:
            # Stay well inside the lease so no other worker claims a row still being sent.
            result = await asyncio.wait_for(
                channel.send(message), timeout=self.config.outbox.lease / 2
            )
        except TimeoutError:
            result = DeliveryResult(ok=False, detail="send timed out", in_doubt=True)
        except Exception as exc:  # a channel bug must not kill the loop or lose the row
            log.exception("channel raised", extra={"channel": row.channel})
            result = DeliveryResult(
                ok=False, detail=f"channel raised {type(exc).__name__}", in_doubt=True
            )
        await self._record(row, result)

    async def _reconcile(
        self, channel: Reconciler, row: OutboxRow, message: OutboundMessage
    ) -> DeliveryResult | None:
        """The upstream's record of an in-doubt message, or None to send it (again)."""
        assert row.doubt_since is not None
        since = row.doubt_since - self.config.outbox.reconcile_margin
        fields = {"channel": row.channel, "delivery_id": row.delivery_id, "attempt": row.attempts}
        try:
            # A quarter of the lease, so lookup plus send (half) stay inside it.
            found = await asyncio.wait_for(
                channel.find_delivered(message, since), timeout=self.config.outbox.lease / 4
            )
        except TimeoutError:
            found = DeliveryResult(ok=False, detail="lookup timed out")
        except Exception as exc:  # a lookup bug must never keep a page from being sent
            log.exception("channel lookup raised", extra={"channel": row.channel})
            found = DeliveryResult(ok=False, detail=f"lookup raised {type(exc).__name__}")
        if found is None:
            outcome = "not_found"
        elif found.ok:
            outcome = "found"
        else:
            outcome = "error"
        self.metrics.reconciliations.labels(channel=row.channel, outcome=outcome).inc()
        if outcome == "found":
            return found
        # Unknown is treated as not there: a lost page is worse than a doubled one.
        log.info(
            "in-doubt message not found upstream, sending again"
            if outcome == "not_found"
            else "in-doubt message could not be looked up, sending again",
            extra={**fields, "detail": found.detail if found else ""},
        )
        return None

    async def _reconciled(self, row: OutboxRow, found: DeliveryResult) -> None:
        if await self.store.mark_delivered(
            row,
            owner=self.owner,
            now=self._now(),
            upstream_id=found.upstream_id,
            reconciled=True,
        ):
            self.metrics.deliveries.labels(channel=row.channel, outcome="success").inc()
            log.info(
                "in-doubt message found upstream, marked delivered without resending",
                extra={
                    "channel": row.channel,
                    "contact": row.contact,
                    "delivery_id": row.delivery_id,
                    "incident": row.incident_id,
                    "attempt": row.attempts,
                    "detail": found.detail,
                },
            )

    def _recipient(self, row: OutboxRow) -> Recipient:
        kind = self.config.channels[row.channel].kind if row.channel in self.config.channels else ""
        address: Secret | str | None = self.secrets.addresses.get((row.contact, kind))
        if address is None:
            contact = self.config.contacts.get(row.contact)
            address = contact.display_name if contact else row.contact
        return Recipient(contact=row.contact, address=address)

    async def _record(self, row: OutboxRow, result: DeliveryResult) -> None:
        now = self._now()
        fields = {
            "channel": row.channel,
            "contact": row.contact,
            "delivery_id": row.delivery_id,
            "incident": row.incident_id,
            "attempt": row.attempts,
            "detail": result.detail,
        }
        if result.ok:
            if await self.store.mark_delivered(
                row, owner=self.owner, now=now, upstream_id=result.upstream_id
            ):
                self.metrics.deliveries.labels(channel=row.channel, outcome="success").inc()
                self.metrics.delivery_latency.labels(channel=row.channel).observe(
                    max(0.0, now - row.created_at)
                )
                log.info("delivered", extra=fields)
            return
        throttled = result.retry_after is not None and not result.permanent
        if not throttled and (result.permanent or row.attempts >= self.config.outbox.attempts):
            await self._dead(row, result.detail or "failed")
            return
        if result.retry_after is not None:
            # A throttle is the channel's state, not the message's fault: pause the whole
            # channel and do not count the attempt against the message.
            wait = max(0.0, result.retry_after)
            self._paused_until[row.channel] = max(self.paused_until(row.channel), now + wait)
            next_at = now + wait
        else:
            next_at = now + backoff_delay(
                row.attempts,
                base=self.config.outbox.backoff_base,
                maximum=self.config.outbox.backoff_max,
                jitter=self.config.outbox.jitter,
                rng=self.rng,
            )
        if await self.store.mark_retry(
            row,
            owner=self.owner,
            now=now,
            next_attempt_at=next_at,
            error=result.detail,
            refund_attempt=throttled,
            in_doubt=result.in_doubt,
        ):
            self.metrics.deliveries.labels(channel=row.channel, outcome="retry").inc()
            log.warning("delivery failed, will retry", extra={**fields, "retry_in": next_at - now})

    async def _dead(self, row: OutboxRow, error: str) -> None:
        now = self._now()
        if not await self.store.mark_dead(row, owner=self.owner, now=now, error=error):
            return
        self.metrics.deliveries.labels(channel=row.channel, outcome="dead_letter").inc()
        self.metrics.dead_letters.labels(channel=row.channel).inc()
        log.error(
            "delivery dead-lettered",
            extra={
                "channel": row.channel,
                "contact": row.contact,
                "delivery_id": row.delivery_id,
                "incident": row.incident_id,
                "attempts": row.attempts,
                "err": error,
            },
        )
        if row.purpose == "dead_letter_report":
            return  # a failed report is not reported again: no loops
        await self.store.enqueue(self._reports(row, error), now=now)
        for report in self.config.outbox.dead_letter_report:
            self.wake(report.channel)

    def _reports(self, row: OutboxRow, error: str) -> list[NewOutboxRow]:
        text = DEAD_LETTER_TEXT.get(self.config.language, DEAD_LETTER_TEXT["ja"]).format(
            channel=row.channel,
            contact=row.contact,
            level=row.level,
            attempts=row.attempts,
            incident=row.incident_id or "-",
            error=error[:200],
        )
        subject = "【配信失敗】" if self.config.language == "ja" else "[delivery failed]"
        rendered = rendered_to_json(RenderedMessage(subject=subject, text=text))
        owner = ownership((), self.config)
        rows = []
        for report in self.config.outbox.dead_letter_report:
            if report.channel == row.channel:
                continue
            for token in report.to:
                for contact in audience_contacts(token, owner, self.config):
                    rows.append(
                        NewOutboxRow(
                            delivery_id=delivery_id(row.delivery_id, report.channel, contact),
                            pair_key=pair_key(f"dead:{row.delivery_id}", report.channel, contact),
                            purpose="dead_letter_report",
                            incident_id=row.incident_id,
                            group_key=row.group_key,
                            channel=report.channel,
                            contact=contact,
                            status="firing",
                            level=row.level,
                            rendered=rendered,
                            not_before=0.0,
                        )
                    )
        return rows

    async def refresh_snapshot(self) -> None:
        """Re-read the store-derived gauges."""
        now = self._now()
        stats = await self.store.outbox_stats()
        incidents = await self.store.open_incidents_by_level()
        self.metrics.snapshot = StoreSnapshot(
            outbox={
                s.channel: (
                    s.depth,
                    max(0.0, now - s.oldest_created_at) if s.oldest_created_at else 0.0,
                )
                for s in stats
            },
            incidents_open=incidents,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Run every channel loop and the gauge refresher until ``stop`` is set."""
        tasks = [
            asyncio.create_task(self._channel_loop(name, stop), name=f"outbox-{name}")
            for name in self.channels
        ]
        tasks.append(asyncio.create_task(self._snapshot_loop(stop), name="outbox-snapshot"))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _channel_loop(self, channel: str, stop: asyncio.Event) -> None:
        poll = self.config.outbox.poll_interval
        wake = self._wake[channel]
        while not stop.is_set():
            wake.clear()
            try:
                handled = await self.run_channel_once(channel)
                if handled:
                    continue
                due = await self.store.next_due(channel)
            except StoreUnavailable as exc:
                log.warning("outbox store unavailable", extra={"channel": channel, "err": str(exc)})
                await sleep_until_stopped(stop, poll)
                continue
            now = self._now()
            delay = poll
            if due is not None:
                delay = min(poll, max(0.0, due - now))
            delay = max(delay, self.paused_until(channel) - now)
            if delay <= 0:
                continue
            await sleep_until_woken(wake, stop, delay)

    async def _snapshot_loop(self, stop: asyncio.Event) -> None:
        interval = max(1.0, self.config.outbox.poll_interval)
        while not stop.is_set():
            try:
                await self.refresh_snapshot()
            except StoreUnavailable as exc:
                log.warning("cannot refresh outbox gauges", extra={"err": str(exc)})
            if await sleep_until_stopped(stop, interval):
                return
