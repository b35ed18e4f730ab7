"""Typed application keys shared by the simulator's modules."""

from importlib import metadata
from typing import TYPE_CHECKING

from aiohttp import web

from voicedrive_sim.faults import FaultBoard
from voicedrive_sim.settings import SimSettings

if TYPE_CHECKING:
    from voicedrive_sim.api import ApiListener
    from voicedrive_sim.dbproxy import DbProxy
    from voicedrive_sim.writer import NotificationWriter

try:
    VERSION = metadata.version("voicedrive-monitoring")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    VERSION = "0.0.0"

FAULTS = web.AppKey("faults", FaultBoard)
SETTINGS = web.AppKey("settings", SimSettings)
API_LISTENER: "web.AppKey[ApiListener]" = web.AppKey("api_listener")
DB_PROXY: "web.AppKey[DbProxy | None]" = web.AppKey("db_proxy")
WRITER: "web.AppKey[NotificationWriter | None]" = web.AppKey("writer")
