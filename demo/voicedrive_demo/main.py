"""``voicedrive-demo`` (= ``make demo``): the stack on loopback, then the short fire drill.

Exit status 0 when every drill step passed. ``--keep-running`` leaves the stack up after the
drill, ``--no-drill`` runs the stack until Ctrl-C or SIGTERM.

No prompts and no terminal needed: everything it prints goes to stdout, its own log to
stderr, each service's output to ``<dir>/logs/<service>.log``.
"""

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

import aiohttp

from voicedrive_common.errors import ConfigError
from voicedrive_common.logs import FORMATS, LEVELS, register_secret, setup_logging
from voicedrive_common.throwaway_pg import PostgresUnavailable
from voicedrive_demo.banner import banner
from voicedrive_demo.drill import Drill, DrillError, PageWatcher, summary
from voicedrive_demo.ports import DEFAULT_PORTS, Ports, busy_ports, choose_ports
from voicedrive_demo.postgres import DemoPostgres
from voicedrive_demo.stack import (
    DATABASE,
    STAND_INS,
    Layout,
    Stack,
    alerting_missing,
    build_services,
    exporter_available,
)
from voicedrive_demo.supervisor import ServiceFailed, Supervisor
from voicedrive_demo.timing import RulesFailed, Timing

log = logging.getLogger("voicedrive_demo")


def build_parser() -> argparse.ArgumentParser:
    """The ``voicedrive-demo`` command line."""
    parser = argparse.ArgumentParser(
        prog="voicedrive-demo",
        description="Start the VoiceDrive monitoring stack on loopback with compressed time and "
        "run the fire drill (a few minutes); exit 0 when every step passed.",
    )
    add = parser.add_argument
    add("--dir", default=".demo", help="working directory for logs, configs, backups")
    add(
        "--base-port",
        type=int,
        default=None,
        help="shift every port to BASE+offset (0: any free ports); default: contract ports",
    )
    add("--port", action="append", default=[], metavar="NAME=PORT", help="override one port")
    drill = parser.add_mutually_exclusive_group()
    drill.add_argument(
        "--drill",
        action="store_true",
        help="run the fire drill after start (the default; kept for old command lines)",
    )
    drill.add_argument(
        "--no-drill",
        action="store_true",
        help="no drill: run the stack until Ctrl-C or SIGTERM (or --duration)",
    )
    until = parser.add_mutually_exclusive_group()
    until.add_argument(
        "--keep-running",
        action="store_true",
        help="after the drill, keep the stack running until Ctrl-C or SIGTERM",
    )
    until.add_argument(
        "--duration", type=float, default=None, metavar="SECONDS", help="stop after SECONDS"
    )
    add("--no-exporter", action="store_true", help="do not start the exporter (nor alerting)")
    add(
        "--no-alerting",
        action="store_true",
        help="do not start Prometheus, Alertmanager, the receiver and the mail catcher",
    )
    add("--log.level", dest="log_level", default="info", choices=LEVELS)
    add("--log.format", dest="log_format", default="logfmt", choices=FORMATS)
    return parser


def wants_drill(args: argparse.Namespace) -> bool:
    """Whether this run ends with the drill (the default)."""
    # Without the alerting half there is nothing to drill: only an explicit --drill insists.
    return bool(args.drill or not (args.no_drill or args.no_alerting or args.no_exporter))


async def run(args: argparse.Namespace, ports: Ports, layout: Layout) -> int:
    """Start everything, print where to look, wait, stop everything; the exit status."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, stop.set)
    with_exporter = not args.no_exporter and exporter_available()
    if not with_exporter and not args.no_exporter:
        log.warning("voicedrive_exporter is not installed; starting without the exporter")
    missing = alerting_missing()
    with_alerting = with_exporter and not args.no_alerting and not missing
    drilling = wants_drill(args)
    if drilling and not with_alerting:
        log.error(
            "the drill needs the exporter, Prometheus, Alertmanager and the receiver "
            "(--no-drill runs the stack without it)",
            extra={"missing": ", ".join(missing) or "--no-alerting/--no-exporter given"},
        )
        return 2
    if missing and not args.no_alerting:
        log.warning(
            "starting without Prometheus, Alertmanager and the receiver",
            extra={"missing": ", ".join(missing)},
        )
    pg = DemoPostgres(port=ports["postgres"])
    register_secret(pg.password)
    layout.prepare(db_password=pg.password)
    supervisor = Supervisor(log_dir=layout.logs, stop=stop)
    try:
        log.info("starting PostgreSQL", extra={"port": ports["postgres"]})
        await asyncio.to_thread(pg.start)
        if stop.is_set():
            return 0
        await asyncio.to_thread(pg.create_database, DATABASE)
        timing = Timing()
        stack = Stack(
            ports=ports,
            layout=layout,
            db_user=pg.user,
            db_dsn_direct=pg.dsn_for(pg.user, pg.password, DATABASE),
            probe_interval=timing.probe_interval,
            probe_timeout=timing.probe_timeout,
            timing=timing,
        )
        services = build_services(stack, with_exporter=with_exporter, with_alerting=with_alerting)
        await supervisor.start_all(services)
        if stop.is_set():
            return 0
        text = banner(
            ports=ports, layout=layout, with_exporter=with_exporter, with_alerting=with_alerting
        )
        print(text, flush=True)
        if with_alerting:
            print(timing.describe() + "\n", flush=True)
        if drilling:
            return await _drill_then_maybe_run(args, ports, layout, supervisor, timing)
        await supervisor.watch(duration=args.duration)
        return 0
    except RulesFailed as exc:
        log.error("could not generate the demo's rules", extra={"err": str(exc)})
        return 1
    except ServiceFailed as exc:
        log.error("service failed", extra={"service": exc.name, "err": exc.reason})
        if exc.log_tail:
            print(f"--- last lines of {exc.name}'s log ---\n{exc.log_tail}", file=sys.stderr)
        return 1
    except PostgresUnavailable as exc:
        if stop.is_set():  # Ctrl-C reaches PostgreSQL too when it comes from a terminal
            return 0
        log.error("PostgreSQL did not start", extra={"err": str(exc)})
        return 1
    finally:
        log.info("stopping")
        await supervisor.stop_all()
        await asyncio.to_thread(pg.cleanup)
        log.info("stopped")


async def _drill_then_maybe_run(
    args: argparse.Namespace, ports: Ports, layout: Layout, supervisor: Supervisor, timing: Timing
) -> int:
    """Run the drill while watching the services; afterwards keep running only if asked."""
    watcher = PageWatcher(
        outbox=layout.outbox,
        mail_dir=layout.mail,
        channel_outboxes=[layout.channel_outbox(name) for name in STAND_INS],
    )
    drill = Drill(
        admin_url=ports.url("sim-admin", "/admin/faults"),
        admin_token=layout.token_file.read_text(encoding="utf-8").strip(),
        receiver_url=ports.url("receiver"),
        receiver_token=layout.receiver_token_file.read_text(encoding="utf-8").strip(),
        watcher=watcher,
        out=sys.stdout,
        timing=timing,
        alertmanager_url=ports.url("alertmanager"),
    )
    drilling = asyncio.create_task(drill.run(), name="drill")
    watching = asyncio.create_task(supervisor.watch(duration=args.duration), name="watch")
    done, _ = await asyncio.wait({drilling, watching}, return_when=asyncio.FIRST_COMPLETED)
    if watching in done:
        # Stopped, out of time or a service died: the drill ends with the stack.
        drilling.cancel()
        await asyncio.gather(drilling, return_exceptions=True)
        watching.result()
        # Stopped or out of time before the drill ended: it did not pass.
        return 1
    try:
        report = drilling.result()
    except (DrillError, aiohttp.ClientError) as exc:
        watching.cancel()
        log.error("drill failed", extra={"err": str(exc)})
        return 1
    print(summary(report), flush=True)
    passed = report.ok
    if args.keep_running:
        print("\nThe drill is over; the stack keeps running until Ctrl-C.", flush=True)
        await watching
    else:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
    return 0 if passed else 1


def main(argv: list[str] | None = None) -> int:
    """Console entry point."""
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        ports = choose_ports(args.base_port, args.port)
    except ConfigError as exc:
        print(f"voicedrive-demo: {exc}", file=sys.stderr)
        return 2
    busy = busy_ports(ports, list(DEFAULT_PORTS))
    if busy:
        taken = ", ".join(f"{name} ({ports[name]})" for name in busy)
        print(
            f"voicedrive-demo: ports in use: {taken}. Is another demo running? "
            "Stop it, or choose other ports with --base-port N or --port NAME=PORT.",
            file=sys.stderr,
        )
        return 2
    if args.duration is not None and args.duration <= 0:
        print("voicedrive-demo: --duration must be positive", file=sys.stderr)
        return 2
    return asyncio.run(run(args, ports, Layout(Path(args.dir).resolve())))


if __name__ == "__main__":
    sys.exit(main())
