"""A real ``voicedrive-receiver`` process and a counting HTTP sink for its webhook channel."""

import asyncio
import json
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp
from aiohttp import web

from voicedrive_common.throwaway_pg import free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "process-token-456"


@dataclass
class Sink:
    """Counts every POST by delivery id; answers after ``delay`` seconds."""

    delay: float = 0.0
    received: Counter[str] = field(default_factory=Counter)
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)
    url: str = ""
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        delivery = request.headers["Idempotency-Key"]
        self.received[delivery] += 1
        self.bodies[delivery] = body
        self.changed.set()
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.json_response({"ok": True})

    @property
    def total(self) -> int:
        """Every POST, duplicates included."""
        return sum(self.received.values())

    async def wait_for(self, distinct: int, seconds: float) -> None:
        """Until ``distinct`` delivery ids arrived (bounded by ``seconds``)."""
        async with asyncio.timeout(seconds):
            while len(self.received) < distinct:
                self.changed.clear()
                await self.changed.wait()


@asynccontextmanager
async def sink(delay: float = 0.0) -> AsyncIterator[Sink]:
    """A Sink on 127.0.0.1, port 0."""
    state = Sink(delay=delay)
    app = web.Application()
    app.router.add_post("/hook", state.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield state
    finally:
        await runner.cleanup()


def process_config(*, store: str, sink_url: str, members: int, concurrency: int = 2) -> str:
    """A config with one webhook channel reaching ``members`` contacts at Level 1."""
    contacts = "\n".join(f"  c{i}: {{}}" for i in range(members))
    names = ", ".join(f"c{i}" for i in range(members))
    return f"""
server:
  auth: {{bearer_token: "${{RX_TOKEN}}"}}
store:
  {store}
contacts:
{contacts}
teams:
  everyone: {{systems: [voicedrive], members: [{names}]}}
channels:
  hook: {{type: webhook, url: "{sink_url}", timeout: 5s}}
fanout:
  targets:
    - {{level: 1, channel: hook, to: [team:everyone]}}
outbox:
  lease: 1s
  poll_interval: 100ms
  concurrency: {concurrency}
  backoff_base: 100ms
"""


@dataclass
class Receiver:
    """A running receiver process."""

    proc: asyncio.subprocess.Process
    port: int
    log: Path

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    async def post(self, session: aiohttp.ClientSession, body: Any) -> int:
        """POST a webhook payload; the status."""
        async with session.post(
            f"{self.url}/webhook",
            data=json.dumps(body),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        ) as resp:
            await resp.read()
            return resp.status

    def kill(self) -> None:
        """SIGKILL: no clean-up at all."""
        self.proc.kill()

    async def stop(self) -> None:
        """SIGTERM and wait (bounded), then kill."""
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), timeout=10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def _append(path: Path) -> BinaryIO:
    return open(path, "ab")


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:]


async def start_receiver(config: Path, log: Path, env: dict[str, str] | None = None) -> Receiver:
    """Start ``voicedrive-receiver`` and wait until /-/ready answers 200 (bounded)."""
    port = free_port()
    with _append(log) as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "voicedrive_receiver.main",
            "--config.file",
            str(config),
            "--web.listen-address",
            f"127.0.0.1:{port}",
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "RX_TOKEN": TOKEN, **(env or {})},
        )
    receiver = Receiver(proc=proc, port=port, log=log)
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            if proc.returncode is not None:
                raise AssertionError(f"receiver exited: {_tail(log)}")
            try:
                async with session.get(f"{receiver.url}/-/ready") as resp:
                    if resp.status == 200:
                        return receiver
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    await receiver.stop()
    raise AssertionError(f"receiver not ready: {_tail(log)}")


def upstreams_config(
    *, store: str, slack_api: str, slack_channel: str, twilio_api: str, members: int
) -> str:
    """A config paging ``members`` contacts at Level 1 by Slack (bot token) and SMS."""
    contacts = "\n".join(
        f'  c{i}: {{slack: "{slack_channel}", sms: "+8190000{i:05d}"}}' for i in range(members)
    )
    names = ", ".join(f"c{i}" for i in range(members))
    return f"""
server:
  auth: {{bearer_token: "${{RX_TOKEN}}"}}
store:
  {store}
contacts:
{contacts}
teams:
  everyone: {{systems: [voicedrive], members: [{names}]}}
channels:
  slack: {{type: slack, token: "${{RX_SLACK_TOKEN}}", api_url: "{slack_api}", timeout: 5s}}
  sms:
    type: sms
    account_sid: "${{RX_TWILIO_SID}}"
    auth_token: "${{RX_TWILIO_TOKEN}}"
    from: "+815012345678"
    api_url: "{twilio_api}"
    timeout: 5s
fanout:
  targets:
    - {{level: 1, channel: slack, to: [team:everyone]}}
    - {{level: 1, channel: sms, to: [team:everyone]}}
outbox:
  lease: 1s
  poll_interval: 100ms
  concurrency: 2
  backoff_base: 100ms
"""
