"""CLI subcommands: `incidents list|show|ack|resolve|record|export`, `schedule`, `daily-check`.

They work on the store named by the config (the same SQLite file or PostgreSQL database the
server uses), so they also work while the server is down; the running server's scheduler picks
up what they change on its next pass. ``--config.file`` may be given before or after the
subcommand, or as ``VOICEDRIVE_RECEIVER_CONFIG``.
"""

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path

from voicedrive_common.clock import SystemClock
from voicedrive_common.confload import load_yaml
from voicedrive_common.errors import ConfigError, VoiceDriveError
from voicedrive_receiver.config import (
    PostgresStoreConfig,
    ReceiverConfig,
    ResolvedSecrets,
    load_config,
)
from voicedrive_receiver.incidents import STATUSES
from voicedrive_receiver.lifecycle.daily_check import build_daily_check, render_daily_check
from voicedrive_receiver.lifecycle.persistence import LifecycleStore, when
from voicedrive_receiver.lifecycle.records import RECORD_FIELDS, render_record, validate_fields
from voicedrive_receiver.lifecycle.schedule import (
    Schedule,
    ScheduleError,
    format_gap_lines,
    format_interval,
    parse_schedule,
    range_from_dates,
)
from voicedrive_receiver.lifecycle.service import (
    gather_daily_check,
    record_of,
    records_override,
    test_message_rows,
)
from voicedrive_receiver.lifecycle.tokyo import LANGS, format_time
from voicedrive_receiver.safetext import visible, visible_json
from voicedrive_receiver.store import SqlStore, open_store

CONFIG_ENV = "VOICEDRIVE_RECEIVER_CONFIG"


def load(path: str | None) -> ReceiverConfig:
    """The receiver config at ``path``; ConfigError when none is given."""
    if not path:
        raise ConfigError("", f"--config.file is required (or ${CONFIG_ENV})")
    return load_config(path)


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config.file",
        dest="config_file",
        default=argparse.SUPPRESS,
        help=f"receiver config (default: ${CONFIG_ENV})",
    )


def _config_path(args: argparse.Namespace) -> str | None:
    return getattr(args, "config_file", None) or os.environ.get(CONFIG_ENV)


async def _open_store(config: ReceiverConfig) -> SqlStore:
    # Only the store's secrets: a CLI on a responder's laptop needs no phone numbers.
    store = config.store
    secrets = ResolvedSecrets(
        auth=None,
        metrics_auth=None,
        store_dsn=store.dsn.resolve() if isinstance(store, PostgresStoreConfig) else None,
        store_password=(
            store.password.resolve()
            if isinstance(store, PostgresStoreConfig) and store.password is not None
            else None
        ),
    )
    return await open_store(store, secrets)


def _with_store(
    args: argparse.Namespace, work: Callable[[ReceiverConfig, SqlStore], Awaitable[int]]
) -> int:
    try:
        config = load(_config_path(args))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2

    async def go() -> int:
        store = await _open_store(config)
        try:
            return await work(config, store)
        finally:
            await store.close()

    try:
        return asyncio.run(go())
    except VoiceDriveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


# --- incidents -------------------------------------------------------------------------------


def _configure_incidents(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="incidents, newest first")
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--limit", type=int, default=50)
    show = actions.add_parser("show", help="one incident as JSON")
    show.add_argument("id")
    ack = actions.add_parser("ack", help="acknowledge: escalation stops, NAME is the responder")
    ack.add_argument("id")
    ack.add_argument("--by", required=True, help="who acknowledges")
    res = actions.add_parser("resolve", help="resolve by hand (the 30-minute watch starts)")
    res.add_argument("id")
    res.add_argument("--by", default="cli")
    record = actions.add_parser("record", help="fill the record's free-text fields")
    record.add_argument("id")
    record.add_argument("--by", default="cli")
    for name in RECORD_FIELDS:
        record.add_argument(f"--{name.replace('_', '-')}", dest=name)
    export = actions.add_parser("export", help="the P9 record as Markdown")
    export.add_argument("id")
    export.add_argument("--lang", choices=LANGS)
    export.add_argument("--output", help="write to FILE instead of stdout")
    for child in (listing, show, ack, res, record, export):
        _config_arg(child)


def _run_incidents(args: argparse.Namespace) -> int:
    async def work(config: ReceiverConfig, store: SqlStore) -> int:
        life = LifecycleStore(store)
        now = SystemClock().now()
        lang = config.language
        if args.action == "list":
            for inc in await store.list_incidents(status=args.status, limit=args.limit):
                opened = format_time(when(inc.opened_at), lang)
                print(f"{inc.id}\t{inc.status}\tL{inc.level}\t{opened}\t{visible(inc.summary)}")
            return 0
        if args.action == "show":
            found = await store.get_incident(args.id)
            if found is None:
                print(f"error: no incident {args.id!r}", file=sys.stderr)
                return 1
            print(visible_json(json.dumps(found.to_json(), ensure_ascii=False, indent=2)))
            return 0
        if args.action == "ack":
            done = await life.acknowledge(args.id, by=args.by, now=now)
            acked = format_time(done.lifecycle.acknowledged_at, lang)
            print(f"{args.id} acknowledged by {done.lifecycle.acknowledged_by} at {acked}")
            return 0
        if args.action == "resolve":
            done = await life.resolve(args.id, by=args.by, now=now)
            print(f"{args.id} resolved at {format_time(done.lifecycle.resolved_at, lang)}")
            return 0
        if args.action == "record":
            given = {k: getattr(args, k) for k in RECORD_FIELDS if getattr(args, k) is not None}
            if not given:
                print("error: give at least one field, e.g. --root-cause TEXT", file=sys.stderr)
                return 2
            await life.update_record(args.id, validate_fields(given), by=args.by, now=now)
            print(f"{args.id} record updated: {', '.join(sorted(given))}")
            return 0
        found_incident = await life.get(args.id)
        record = record_of(found_incident, config.lifecycle.escalation, now)
        text = render_record(record, lang=args.lang or lang, override_dir=records_override(config))
        if args.output:
            try:
                await asyncio.to_thread(Path(args.output).write_text, text, encoding="utf-8")
            except OSError as exc:
                print(f"error: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
                return 1
        else:
            # A terminal gets no raw escapes; the record's own indentation keeps its lines apart.
            sys.stdout.write(visible(text, keep_newlines=True))
        return 0

    return _with_store(args, work)


# --- schedule check --------------------------------------------------------------------------


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _configure_schedule(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check", help="list every uncovered interval (Asia/Tokyo), one per line"
    )
    _config_arg(check)
    check.add_argument("--from", dest="start", type=_date, help="first day (default: span)")
    check.add_argument("--to", dest="end", type=_date, help="last day, inclusive")
    check.add_argument("--strict", action="store_true", help="exit 1 when any gap is found")
    check.add_argument("--team", help="only this team's shifts count as coverage")
    check.add_argument("--lang", choices=LANGS, default="ja", help="weekday names")


def load_schedule(path: str) -> Schedule:
    """A schedule file (top-level ``shifts``) or the schedule of a receiver config."""
    root = load_yaml(path)
    if root.has("shifts"):
        return parse_schedule(root)
    config = load(path)
    if config.lifecycle.schedule is None:
        raise ConfigError("lifecycle", "no schedule configured (schedule or schedule_file)")
    return config.lifecycle.schedule


def _run_schedule(args: argparse.Namespace) -> int:
    path = _config_path(args)
    if not path:
        print("error: --config.file is required", file=sys.stderr)
        return 2
    try:
        schedule = load_schedule(path)
        window = range_from_dates(args.start, args.end, schedule)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except ScheduleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    known = sorted(schedule.teams | {shift.team for shift in schedule.shifts})
    if args.team is not None and args.team not in known:
        # Otherwise an unknown team reads as "the whole span is uncovered".
        print(f"error: unknown team {args.team!r} (known: {', '.join(known)})", file=sys.stderr)
        return 2
    gaps = schedule.coverage_gaps(window, team=args.team)
    for line in format_gap_lines(gaps, args.lang):
        print(line)
    print(
        f"{len(gaps)} uncovered interval(s) in {format_interval(window, args.lang)} (Asia/Tokyo)",
        file=sys.stderr,
    )
    return 1 if args.strict and gaps else 0


# --- daily check -----------------------------------------------------------------------------


def _configure_daily(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lang", choices=LANGS)
    parser.add_argument("--format", choices=("markdown", "json"), default="markdown")
    parser.add_argument("--strict", action="store_true", help="exit 1 when an item fails")
    parser.add_argument(
        "--send-test",
        action="store_true",
        help="enqueue one test message per channel (the running receiver delivers them)",
    )


def _run_daily(args: argparse.Namespace) -> int:
    async def work(config: ReceiverConfig, store: SqlStore) -> int:
        if args.send_test:
            rows = test_message_rows(config, now=SystemClock().now())
            count = await LifecycleStore(store).enqueue(rows, now=SystemClock().now())
            channels = ", ".join(sorted({r.channel for r in rows}))
            print(f"enqueued {count} test message(s): {channels}", file=sys.stderr)
        inputs = await gather_daily_check(
            config=config,
            settings=config.lifecycle,
            store=LifecycleStore(store),
            now=SystemClock().now(),
        )
        report = build_daily_check(inputs, lang=args.lang or config.language)
        if args.format == "json":
            print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
        else:
            sys.stdout.write(render_daily_check(report))
        return 1 if args.strict and not report.ok else 0

    return _with_store(args, work)


Configure = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]

# name -> (help, configure, run); main.build_parser registers them as subcommands.
COMMANDS: dict[str, tuple[str, Configure, Run]] = {
    "incidents": (
        "list, show, acknowledge, resolve, fill and export incidents",
        _configure_incidents,
        _run_incidents,
    ),
    "schedule": (
        "check the on-call schedule for uncovered intervals",
        _configure_schedule,
        _run_schedule,
    ),
    "daily-check": ("the P9 daily checklist from live data", _configure_daily, _run_daily),
}
