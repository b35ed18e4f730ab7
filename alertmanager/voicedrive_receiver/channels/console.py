"""The demo's channel: print each message to stdout and/or append it as a JSON line to a file.

On stdout a message is a head line ``=== channel -> contact [status] ===`` and its lines, each
after the marker ``  | ``: no line of alert text can start at the margin and pass for a new
message or a log line.

A line in the file ("file outbox"): ``ts``, ``delivery_id``, ``channel``, ``contact``,
``status``, ``level``, ``incident_id``, ``subject``, ``text``. The recipient's address is
never written, only its contact key.
"""

import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from voicedrive_common.clock import Clock, SystemClock
from voicedrive_common.confload import Node
from voicedrive_receiver.channels.base import DeliveryResult, OutboundMessage
from voicedrive_receiver.safetext import CONTINUATION, continued, visible


@dataclass(frozen=True)
class ConsoleSettings:
    """Where the messages go."""

    stdout: bool = True
    file: Path | None = None


class ConsoleType:
    """Registry entry for ``type: console``."""

    kind = "console"

    def parse(self, node: Node) -> ConsoleSettings:
        """Settings from the channel's config mapping."""
        stdout = node.flag("stdout", True)
        file = node.text("file", None)
        node.done()
        if not stdout and file is None:
            raise node.error("stdout", "is false and no file is set: messages would go nowhere")
        return ConsoleSettings(stdout=stdout, file=Path(file) if file is not None else None)

    async def create(
        self,
        settings: ConsoleSettings,
        *,
        name: str,
        clock: Clock | None = None,
        stream: TextIO | None = None,
    ) -> "ConsoleChannel":
        """A channel writing to stdout (or ``stream``) and/or the file."""
        return ConsoleChannel(name, settings, clock=clock or SystemClock(), stream=stream)


class ConsoleChannel:
    """Writes one block of text and/or one JSON line per delivery."""

    def __init__(
        self, name: str, settings: ConsoleSettings, *, clock: Clock, stream: TextIO | None
    ) -> None:
        self.name = name
        self._settings = settings
        self._clock = clock
        self._stream = stream
        self._lock = asyncio.Lock()

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        """Print and/or append; a file that cannot be written is a retryable failure."""
        record = self._record(message)
        if self._settings.stdout:
            stream = self._stream or sys.stdout
            head = f"=== {self.name} -> {message.recipient.contact} [{message.status}] ==="
            # stdout is the log stream: alert text must not forge lines or smuggle escapes, so
            # only the head starts at the margin; every line of the message is marked.
            subject = visible(message.rendered.subject)
            body = f"{CONTINUATION}{subject}\n" if subject else ""
            text = continued(message.rendered.text)
            stream.write(f"{visible(head)}\n{body}{text}\n")
            stream.flush()
        if self._settings.file is not None:
            line = json.dumps(record, ensure_ascii=False) + "\n"
            async with self._lock:
                try:
                    await asyncio.to_thread(_append, self._settings.file, line)
                except OSError as exc:
                    return DeliveryResult(
                        ok=False, detail=f"console: cannot append to file ({exc.strerror})"
                    )
        return DeliveryResult(ok=True, detail="console: written", upstream_id=message.delivery_id)

    def _record(self, message: OutboundMessage) -> dict[str, Any]:
        return {
            "ts": self._clock.now().isoformat().replace("+00:00", "Z"),
            "delivery_id": message.delivery_id,
            "channel": self.name,
            "kind": message.channel,
            "contact": message.recipient.contact,
            "status": message.status,
            "level": message.level,
            "incident_id": message.incident_id,
            "subject": message.rendered.subject,
            "text": message.rendered.text,
        }

    async def close(self) -> None:
        """Nothing to release."""


def _append(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
