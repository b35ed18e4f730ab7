"""Pieces shared by the exporter, the simulator, the receiver and the demo.

Only what at least two components use lives here: the clock, duration parsing, config
loading helpers with key paths, secret references, logging set-up and the throwaway
PostgreSQL cluster used by the demo and the tests.
"""

from voicedrive_common.errors import ConfigError, VoiceDriveError

__all__ = ["ConfigError", "VoiceDriveError"]
