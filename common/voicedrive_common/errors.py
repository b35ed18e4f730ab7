"""Exception roots shared by every component.

VoiceDriveError
 └── ConfigError   a configuration value is wrong; ``path`` names the key
"""


class VoiceDriveError(Exception):
    """Root of every exception this project raises on purpose."""


class ConfigError(VoiceDriveError):
    """A configuration value is invalid; the message starts with the key path."""

    def __init__(self, path: str, message: str, *, source: str | None = None) -> None:
        self.path = path
        self.reason = message
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{path or '<root>'}: {message}")
