"""Holding Level 1-2 messages for the medical system team outside its business hours (P1).

A held message is stored as an outbox row on the pseudo-channel ``held:<channel>`` with its
release time (the next business start) as due time: no delivery loop serves those names, so it
is never sent on its own. At the release time the scheduler turns all held rows of one
(channel, contact) into one digest message and marks them ``digested``, in one transaction
under one lock, with the digest's delivery id unique: one digest, also with several replicas.
"""

import html
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from voicedrive_receiver.identity import delivery_id, pair_key
from voicedrive_receiver.lifecycle.business_hours import Digest, HeldItem, HoldPolicy, decide_hold
from voicedrive_receiver.lifecycle.tokyo import Lang
from voicedrive_receiver.store.base import HELD_PREFIX, Connection, NewOutboxRow, SqlStore

_LOCK = "lifecycle:digest"


def release_time(policy: HoldPolicy, *, level: int, at: datetime) -> datetime | None:
    """When a message for the hold team raised at ``at`` may go out (None: at once)."""
    decision = decide_hold(policy, team=policy.team, level=level, at=at)
    return decision.release_at if decision.held else None


def hold_row(row: NewOutboxRow, release: datetime) -> NewOutboxRow:
    """The held twin of an outbox row: parked on ``held:<channel>`` until ``release``."""
    return NewOutboxRow(
        delivery_id=row.delivery_id,
        # Its own conversation key, so a parked row never blocks the live conversation.
        pair_key=pair_key(f"{HELD_PREFIX}{row.group_key}", row.channel, row.contact),
        purpose="held",
        incident_id=row.incident_id,
        group_key=row.group_key,
        channel=f"{HELD_PREFIX}{row.channel}",
        contact=row.contact,
        status=row.status,
        level=row.level,
        rendered=row.rendered,
        not_before=release.timestamp(),
    )


@dataclass(frozen=True)
class Released:
    """Digests enqueued by one release pass."""

    digests: int
    items: int
    channels: tuple[str, ...]


def _rendered(digest: Digest, lang: Lang) -> dict[str, Any]:
    text = digest.text(lang)
    subject = text.splitlines()[0].rstrip(":")
    return {
        "subject": subject,
        "text": text,
        "html": f"<pre>{html.escape(text)}</pre>",
        "extra": {},
    }


async def release_digests(
    store: SqlStore, *, policy: HoldPolicy, now: datetime, lang: Lang
) -> Released:
    """Turn every held row due by ``now`` into one digest per (channel, contact, release)."""
    ts = now.timestamp()

    async def work(conn: Connection) -> Released:
        rows = await conn.fetch(
            "SELECT o.id, o.channel, o.contact, o.incident_id, o.level, o.created_at, "
            "o.next_attempt_at, o.group_key, i.summary FROM outbox o "
            "LEFT JOIN incidents i ON i.id = o.incident_id "
            "WHERE o.purpose = 'held' AND o.state = 'pending' AND o.next_attempt_at <= $1",
            ts,
        )
        # Sorted here: an ORDER BY o.id makes SQLite scan the outbox instead of outbox_held.
        rows.sort(key=lambda r: int(r["id"]))
        groups: dict[tuple[str, str, float], list[Mapping[str, Any]]] = {}
        for r in rows:
            channel = str(r["channel"]).removeprefix(HELD_PREFIX)
            key = (channel, str(r["contact"]), float(r["next_attempt_at"]))
            groups.setdefault(key, []).append(r)
        digests = []
        digest_keys: dict[int, str] = {}
        for (channel, contact, release), members in groups.items():
            items = tuple(
                HeldItem(
                    incident_id=str(m["incident_id"] or "-"),
                    level=int(m["level"]),
                    summary=str(m["summary"] or ""),
                    raised_at=datetime.fromtimestamp(float(m["created_at"]), UTC),
                    release_at=datetime.fromtimestamp(release, UTC),
                    team=policy.team,
                )
                for m in members
            )
            # One digest per team and release; items of one contact, oldest first.
            ordered = tuple(sorted(items, key=lambda i: (i.raised_at, i.incident_id)))
            digest = Digest(policy.team, datetime.fromtimestamp(release, UTC), ordered)
            digest_keys.update((int(m["id"]), digest.key) for m in members)
            digests.append(
                NewOutboxRow(
                    delivery_id=delivery_id(digest.key, channel, contact),
                    pair_key=pair_key(digest.key, channel, contact),
                    purpose="digest",
                    incident_id=None,
                    group_key=digest.key,
                    channel=channel,
                    contact=contact,
                    status="firing",
                    level=max(i.level for i in items),
                    rendered=_rendered(digest, lang),
                    not_before=ts,
                )
            )
        if digests:
            # Digest in, held rows out, in this one transaction (Store.enqueue opens its own).
            await store._insert_outbox(conn, digests, now=ts)
            for r in rows:
                done = await conn.fetchrow(
                    "UPDATE outbox SET state = 'digested' WHERE id = $1 AND state = 'pending' "
                    "RETURNING id",
                    int(r["id"]),
                )
                if done is not None and r["incident_id"] is not None:
                    # The held page's incident shows when it went out, and in which digest.
                    await store.insert_event(
                        conn,
                        str(r["incident_id"]),
                        at=ts,
                        kind="digested",
                        detail={
                            "channel": str(r["channel"]).removeprefix(HELD_PREFIX),
                            "contact": str(r["contact"]),
                            "level": int(r["level"]),
                            "digest": digest_keys[int(r["id"])],
                        },
                    )
        return Released(
            digests=len(digests),
            items=len(rows),
            channels=tuple(sorted({d.channel for d in digests})),
        )

    return await store.db.run(work, lock_key=_LOCK)
