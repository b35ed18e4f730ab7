"""``voicedrive-receiver``: the Alertmanager webhook receiver, and its subcommands.

The plain form (no subcommand) runs the server. Subcommands are registered in ``COMMANDS``;
each gets the common options (``--config.file``, ``--log.level``, ``--log.format``).
"""

import argparse
import asyncio
import logging
import os
import secrets as pysecrets
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import disable_created_metrics

from voicedrive_common.clock import SystemClock
from voicedrive_common.errors import ConfigError
from voicedrive_common.logs import FORMATS, LEVELS, setup_logging
from voicedrive_receiver.channels.base import Channel
from voicedrive_receiver.config import (
    ReceiverConfig,
    default_channel_types,
    load_config,
    resolve_secrets,
)
from voicedrive_receiver.errors import StoreUnavailable
from voicedrive_receiver.lifecycle.tokyo import to_tokyo
from voicedrive_receiver.metrics import ReceiverMetrics
from voicedrive_receiver.outbox import OutboxWorker
from voicedrive_receiver.rendering import Renderer

log = logging.getLogger("voicedrive_receiver")
DEFAULT_LISTEN = "127.0.0.1:9918"


@dataclass(frozen=True)
class Command:
    """A subcommand: ``configure`` adds its arguments, ``run`` returns the exit code."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {}


def _common(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--config.file", dest="config_file", default=default(None), help="YAML config file"
    )
    parser.add_argument("--log.level", dest="log_level", choices=LEVELS, default=default("info"))
    parser.add_argument(
        "--log.format", dest="log_format", choices=FORMATS, default=default("logfmt")
    )


def build_parser() -> argparse.ArgumentParser:
    """The CLI: server options plus one subparser per registered command."""
    # Parts bring their own subcommands (issue 5: incidents, schedule, daily-check).
    from voicedrive_receiver.lifecycle.cli import COMMANDS as LIFECYCLE_COMMANDS

    for name, (text, configure, run) in LIFECYCLE_COMMANDS.items():
        COMMANDS.setdefault(name, Command(help=text, configure=configure, run=run))

    parser = argparse.ArgumentParser(
        prog="voicedrive-receiver",
        description="Alertmanager webhook receiver: levels, fan-out, incidents.",
    )
    _common(parser, suppress=False)
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default=DEFAULT_LISTEN,
        help=f"host:port to listen on (default {DEFAULT_LISTEN})",
    )
    parser.add_argument(
        "--config.check",
        dest="config_check",
        action="store_true",
        help="validate the config and exit (secrets are not read unless --resolve-secrets)",
    )
    parser.add_argument(
        "--resolve-secrets",
        dest="resolve_secrets",
        action="store_true",
        help="with --config.check: also read every secret and build every channel",
    )
    if COMMANDS:
        sub = parser.add_subparsers(dest="command", metavar="COMMAND")
        for name, command in COMMANDS.items():
            child = sub.add_parser(name, help=command.help)
            _common(child, suppress=True)
            command.configure(child)
            child.set_defaults(run=command.run)
    return parser


def parse_listen(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) as a pair; ValueError names the problem."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--web.listen-address must be host:port, got {address!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - an explicit ":port" means all


def load(path: str | None) -> ReceiverConfig:
    """Load the config or raise ConfigError (no file given is an error too)."""
    if not path:
        raise ConfigError("", "--config.file is required")
    return load_config(path)


async def _check_secrets(config: ReceiverConfig) -> None:
    from voicedrive_receiver.store import check_store_path

    resolve_secrets(config)
    types = default_channel_types()
    for name, channel in config.channels.items():
        created = await types[channel.kind].create(channel.settings, name=name)
        await created.close()
    # Everything start-up checks beyond the file itself: a check that passes, then a start
    # that fails, would surprise whoever restarts a receiver at night.
    check_store_path(config.store)


def config_check(args: argparse.Namespace) -> int:
    """``--config.check``: 0 when valid; the error with its key path otherwise."""
    try:
        config = load(args.config_file)
        if args.resolve_secrets:
            asyncio.run(_check_secrets(config))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 1
    if config.server.auth is None:
        print(f"{args.config_file}: WARNING: server.auth is 'none' (no authentication)")
    ended = schedule_ended(config)
    if ended:
        print(
            f"{args.config_file}: WARNING: {SCHEDULE_ENDED} ({ended['fallback']}) since "
            f"{ended['ended']} ({ended['schedule']}); renew it"
        )
    checked = " and secrets" if args.resolve_secrets else ""
    print(
        f"{args.config_file}: config{checked} OK ({len(config.channels)} channels, "
        f"{len(config.contacts)} contacts, {len(config.fanout.targets)} fan-out targets)"
    )
    return 0


def schedule_ended(config: ReceiverConfig) -> dict[str, str] | None:
    """When the on-call schedule's span is over (its fallback gets every on_duty page): what,
    when and who instead, for a warning."""
    schedule = config.lifecycle.schedule
    ended = schedule.ended(SystemClock().now()) if schedule is not None else None
    if schedule is None or ended is None:
        return None
    return {
        "schedule": config.lifecycle.schedule_source or "lifecycle.schedule",
        "ended": to_tokyo(ended).isoformat(),
        "fallback": ",".join(schedule.fallback.contacts),
    }


SCHEDULE_ENDED = "on-call schedule has ended: every on_duty page goes to its fallback"


def instance_name(config: ReceiverConfig, listen: tuple[str, int]) -> str:
    """Whose journal rows this process owns: ``server.instance``, else host:port."""
    return config.server.instance or f"{socket.gethostname()}:{listen[1]}"


async def serve(config: ReceiverConfig, listen: tuple[str, int]) -> int:
    """Run the server until SIGTERM or SIGINT."""
    from voicedrive_receiver.app import Services, create_app
    from voicedrive_receiver.store import open_store

    # One receiver per process: the *_created series only double the exposition.
    disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client
    secrets = resolve_secrets(config)
    store = await open_store(config.store, secrets)
    channels: dict[str, Channel] = {}
    runner: web.AppRunner | None = None
    try:
        types = default_channel_types()
        for name, spec in config.channels.items():
            channels[name] = await types[spec.kind].create(spec.settings, name=name)
        metrics = ReceiverMetrics(channels=config.channels)
        renderer = Renderer(directory=config.templates.directory, registry=metrics.registry)
        clock = SystemClock()
        owner = f"{socket.gethostname()}:{os.getpid()}:{pysecrets.token_hex(4)}"
        worker = OutboxWorker(
            store=store,
            channels=channels,
            config=config,
            secrets=secrets,
            metrics=metrics,
            clock=clock,
            owner=owner,
        )
        svc = Services(
            config=config,
            secrets=secrets,
            store=store,
            channels=channels,
            metrics=metrics,
            render=renderer.render,
            clock=clock,
            worker=worker,
            instance=instance_name(config, listen),
        )
        await worker.refresh_snapshot()
        runner = web.AppRunner(create_app(svc), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, listen[0], listen[1], reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            log.error(
                "cannot listen",
                extra={"address": f"{listen[0]}:{listen[1]}", "err": exc.strerror or str(exc)},
            )
            return 1
        log.info(
            "listening",
            extra={
                "address": f"{listen[0]}:{listen[1]}",
                "store": type(config.store).__name__,
                "channels": ",".join(config.channels),
                "owner": owner,
            },
        )
        ended = schedule_ended(config)
        if ended:
            log.warning(SCHEDULE_ENDED, extra=ended)
        if config.server.auth is None:
            log.warning(
                "AUTHENTICATION DISABLED (server.auth: none): anyone reaching this port can post "
                "alerts, acknowledge incidents and send test SMS and calls",
                extra={"address": f"{listen[0]}:{listen[1]}"},
            )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down")
    finally:
        if runner is not None:
            await runner.cleanup()
        for created in channels.values():
            await created.close()
        await store.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``voicedrive-receiver``."""
    args = build_parser().parse_args(argv)
    try:
        setup_logging(args.log_level, args.log_format)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    run = getattr(args, "run", None)
    if run is not None:
        code: int = run(args)
        return code
    if args.config_check:
        return config_check(args)
    try:
        listen = parse_listen(args.listen_address)
        config = load(args.config_file)
        return asyncio.run(serve(config, listen))
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    except ConfigError as exc:
        log.error("invalid configuration", extra={"err": str(exc)})
        return 1
    except StoreUnavailable as exc:
        log.error("store unavailable at start", extra={"err": str(exc)})
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
