"""``voicedrive-sim``: parse flags, start, run until SIGTERM or SIGINT, stop cleanly."""

import asyncio
import logging
import signal
import sys

from voicedrive_common.errors import ConfigError
from voicedrive_common.logs import setup_logging
from voicedrive_sim.server import start_simulator
from voicedrive_sim.settings import SimSettings, build_parser, settings_from_args

log = logging.getLogger("voicedrive_sim")


async def serve(settings: SimSettings) -> None:
    """Run the simulator until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    sim = await start_simulator(settings)
    try:
        proxy = sim.proxy_address
        log.info(
            "simulator started",
            extra={
                "api": sim.api_url,
                "admin": sim.admin_url,
                "db_proxy": f"{proxy[0]}:{proxy[1]}" if proxy else "off",
                "writer": "on" if settings.db_dsn else "off",
            },
        )
        await stop.wait()
        log.info("stopping")
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    """Console entry point."""
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        settings = settings_from_args(args)
    except ConfigError as exc:
        print(f"voicedrive-sim: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(settings))
    except OSError as exc:
        log.error("cannot start", extra={"err": str(exc)})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
