"""What the launcher starts: one small record per service, nothing else to learn.

Adding a part to the demo is one more ``Service`` in ``stack.build_services``: the command
line, where it answers when ready, and any extra environment.
"""

import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType


@dataclass(frozen=True, kw_only=True)
class Service:
    """A child process of the demo and how to tell that it is ready."""

    name: str
    argv: tuple[str, ...]
    # Each check must pass: ``http(s)://...`` answers 2xx, ``tcp://host:port`` accepts.
    ready: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    ready_timeout: float = 30.0
    stop_timeout: float = 5.0


def console_script(name: str, module: str | None = None) -> tuple[str, ...]:
    """The command for one of this distribution's console scripts, preferring our own venv."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return (str(beside),)
    found = shutil.which(name)
    if found:
        return (found,)
    if module is not None:
        return (sys.executable, "-m", module)
    return (name,)
