"""``voicedrive-exporter``: flags, start-up, signals (SIGTERM stops, SIGHUP reloads)."""

import argparse
import asyncio
import logging
import signal
import sys

from aiohttp import web

from voicedrive_common.errors import ConfigError
from voicedrive_common.logs import FORMATS, LEVELS, setup_logging
from voicedrive_common.webconfig import WebConfig, load_web_config
from voicedrive_exporter import __version__
from voicedrive_exporter.config import load_config
from voicedrive_exporter.exporter import Exporter, create_app
from voicedrive_exporter.listener import Listener

log = logging.getLogger("voicedrive_exporter")


def parse_listen_address(text: str) -> tuple[str, int]:
    """``host:port``, ``:port`` (all interfaces) or ``[v6]:port``."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--web.listen-address must be HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 (":port" means every interface)


def build_parser() -> argparse.ArgumentParser:
    """The command-line flags, named as in Prometheus exporters."""
    p = argparse.ArgumentParser(prog="voicedrive-exporter", description=__doc__)
    p.add_argument("--config.file", dest="config_file", required=True, help="YAML config")
    p.add_argument(
        "--config.check", dest="config_check", action="store_true", help="validate and exit"
    )
    p.add_argument(
        "--web.listen-address",
        dest="listen",
        default="127.0.0.1:9917",
        help="HOST:PORT to serve on (default 127.0.0.1:9917; ':9917' for every interface)",
    )
    p.add_argument(
        "--web.config.file",
        dest="web_config",
        default=None,
        help="exporter-toolkit web config (TLS, basic auth)",
    )
    p.add_argument("--log.level", dest="log_level", default="info", choices=LEVELS)
    p.add_argument("--log.format", dest="log_format", default="logfmt", choices=FORMATS)
    p.add_argument("--version", action="version", version=f"voicedrive-exporter {__version__}")
    return p


async def serve(exporter: Exporter, web_config: WebConfig, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT; SIGHUP reloads the config and the web config."""
    app = create_app(exporter, web_config)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[bool]] = set()

    def reload() -> None:
        task = loop.create_task(exporter.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        listener = Listener(runner, host, port)
        await listener.start(web_config.ssl_context())
        exporter.listener = listener
        log.info("listening", extra={"address": listener.address, "version": __version__})
        await stop.wait()
        log.info("shutting down")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        config = load_config(args.config_file)
        web_config = load_web_config(args.web_config) if args.web_config else WebConfig()
        web_config.ssl_context()  # load certificates now so a bad file fails at start
        host, port = parse_listen_address(args.listen)
    except (ConfigError, ValueError) as exc:
        # Once: both would land on stderr. --config.check is for people, a start-up for logs.
        if args.config_check:
            print(f"voicedrive-exporter: {exc}", file=sys.stderr)
        else:
            log.error("invalid configuration", extra={"err": str(exc)})
        return 1
    if args.config_check:
        print(f"{args.config_file}: OK")
        return 0
    exporter = Exporter(
        config,
        config_path=args.config_file,
        web_config=web_config,
        web_config_path=args.web_config,
    )
    try:
        asyncio.run(serve(exporter, web_config, host, port))
    except OSError as exc:
        log.error("cannot listen", extra={"address": args.listen, "err": exc.strerror})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
