"""Secret references: a value in the config, ``${ENV}`` expansion, or a file.

A secret is resolved lazily so that ``--config.check`` passes on a machine where the secrets
are not set, and resolution errors name the key and the variable or file, never the value.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

from voicedrive_common.errors import ConfigError

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Secret:
    """A string that refuses to show itself in repr, str, logs or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The real value, for the one place that sends it over the wire."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class SecretRef:
    """Where a secret comes from: inline text (with ``${ENV}``) or a file."""

    path: str
    inline: str | None = None
    file: str | None = None

    def resolve(self) -> Secret:
        """Read the secret now; ConfigError names the key and the missing variable or file."""
        from voicedrive_common.logs import register_secret

        if self.file is not None:
            try:
                value = Path(self.file).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(
                    f"{self.path}_file", f"cannot read secret file {self.file!r}: {exc.strerror}"
                ) from None
        else:
            value = expand_env(self.inline or "", self.path)
        if not value:
            raise ConfigError(self.path, "secret is empty")
        register_secret(value)
        return Secret(value)


def expand_env(text: str, path: str) -> str:
    """Replace every ``${NAME}`` with the environment variable; unset ones are an error."""

    def repl(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(path, f"environment variable {name} is not set")
        return os.environ[name]

    return _ENV_REF.sub(repl, text)
