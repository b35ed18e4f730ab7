"""VoiceDrive exporter: probes API, notifications, database, backups and host; serves /metrics."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("voicedrive-monitoring")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
