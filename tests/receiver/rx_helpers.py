"""Builders shared by the receiver tests: payloads, configs, a recording channel, a harness."""

import importlib.util
import json
import random
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from voicedrive_common.clock import FakeClock
from voicedrive_common.confload import Node, parse_yaml
from voicedrive_common.throwaway_pg import ThrowawayPostgres
from voicedrive_receiver.app import Services, create_app
from voicedrive_receiver.channels.base import (
    Channel,
    ChannelType,
    DeliveryResult,
    OutboundMessage,
    RenderedMessage,
)
from voicedrive_receiver.config import ReceiverConfig, parse_config, resolve_secrets
from voicedrive_receiver.metrics import ReceiverMetrics
from voicedrive_receiver.outbox import OutboxWorker
from voicedrive_receiver.processing import PROCESSOR, Processed, Processor
from voicedrive_receiver.store import open_postgres_store
from voicedrive_receiver.store.base import SqlStore

TOKEN = "test-token-123"


def _shared_conftest() -> Any:
    # tests/conftest.py and this folder's conftest.py share a module name; load the shared one
    # by path so its require_binary (fail, never skip) is the one used.
    path = Path(__file__).resolve().parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("voicedrive_tests_conftest", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


require_binary: Callable[[str], str] = _shared_conftest().require_binary

BASE_CONFIG = """
server:
  auth:
    bearer_token: {token}
store:
  {store}
contacts:
  emergency_channel: {{slack: "#phase2-emergency"}}
  tech_lead: {{email: lead@example.org, sms: "+819000000001", phone: "+819000000001"}}
  hotline: {{sms: "+819000000002", phone: "+819000000002"}}
  infra_engineer: {{email: infra@example.org, sms: "+819000000005"}}
  medical_ops: {{email: medical@example.org, sms: "+819000000003"}}
  person_in_charge: {{phone: "+819000000004"}}
  management: {{email: management@example.org}}
  operator: {{}}
teams:
  voicedrive: {{systems: [voicedrive, both], members: [hotline, tech_lead, infra_engineer]}}
  medical: {{systems: [medical, both], members: [medical_ops]}}
roles:
  infrastructure:
    team: voicedrive
    components: [database, host, backup]
    members: [infra_engineer]
  api_development: {{team: voicedrive, components: [api, notifications], members: [tech_lead]}}
levels:
  default: 2
  rules:
    - matchers: ['alertname=~"Watchdog|InfoInhibitor"']
      level: 1
    - matchers: ['component="database"', 'severity="critical"']
      level: 3
channels:
  slack: {{type: slack}}
  email: {{type: email}}
  sms: {{type: sms}}
  phone: {{type: phone}}
  console: {{type: console}}
fanout:
  targets:
    - {{level: 1, channel: slack, to: [emergency_channel]}}
    - {{level: 2, channel: email, to: [tech_lead]}}
    - {{level: 3, channel: sms, to: [hotline, team:medical]}}
    - {{level: 4, channel: phone, to: [person_in_charge]}}
    - {{level: 4, channel: email, to: [management]}}
outbox:
  attempts: 3
  backoff_base: 10s
  backoff_max: 5m
  jitter: 0.2
  lease: 60s
  dead_letter_report:
    - {{channel: console, to: [operator]}}
"""


class FakeChannelType:
    """A ChannelType whose settings are empty: the tests build the channel objects."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def parse(self, node: Node) -> dict[str, Any]:
        """No settings."""
        node.done()
        return {}

    async def create(self, settings: Any, *, name: str) -> Channel:
        """A recording channel."""
        return RecordingChannel(name)


FAKE_TYPES: dict[str, ChannelType] = {
    k: FakeChannelType(k) for k in ("slack", "email", "sms", "phone", "webhook", "console")
}


class RecordingChannel:
    """A Channel that records what it was asked to send and answers from a script."""

    def __init__(self, name: str, script: Iterable[DeliveryResult] = ()) -> None:
        self.name = name
        self.sent: list[OutboundMessage] = []
        self.script: deque[DeliveryResult] = deque(script)

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        """Record; answer the next scripted result (success when the script is empty)."""
        self.sent.append(message)
        return self.script.popleft() if self.script else DeliveryResult(ok=True, upstream_id="x")

    async def close(self) -> None:
        """Nothing to release."""

    def contacts(self) -> list[tuple[str, str]]:
        """(contact, status) of every send, in order."""
        return [(m.recipient.contact, m.status) for m in self.sent]


def plain_render(
    kind: str, status: str, language: str, context: Mapping[str, Any]
) -> RenderedMessage:
    """A tiny renderer, so core tests do not depend on template wording."""
    return RenderedMessage(
        subject=f"L{context['level']} {status}",
        text=f"{kind} {status} L{context['level']} {context['summary']} {context['incident_id']}",
    )


def config_text(tmp_path: Path, *, store: str | None = None, extra: str = "") -> str:
    """The base test config (SQLite in ``tmp_path`` unless ``store`` is given)."""
    store = store or f"sqlite: {{path: {tmp_path / 'receiver.db'}}}"
    return BASE_CONFIG.format(token=TOKEN, store=store) + extra


def make_config(tmp_path: Path, **kwargs: Any) -> ReceiverConfig:
    """Parse the base test config."""
    return parse_config(parse_yaml(config_text(tmp_path, **kwargs)), channel_types=FAKE_TYPES)


def alert(
    *,
    status: str = "firing",
    fingerprint: str = "fp1",
    starts_at: str = "2025-09-01T09:00:00.123456789+09:00",
    ends_at: str = "0001-01-01T00:00:00Z",
    **labels: str,
) -> dict[str, Any]:
    """One alert of a webhook payload."""
    base = {"alertname": "VoiceDriveApiSlow", "system": "voicedrive", "component": "api"}
    return {
        "status": status,
        "labels": {**base, **labels},
        "annotations": {"summary": "API応答が遅い", "description": "p95 > 500ms"},
        "startsAt": starts_at,
        "endsAt": ends_at,
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": fingerprint,
    }


def payload(
    *alerts: dict[str, Any],
    status: str | None = None,
    group_key: str = '{}:{alertname="VoiceDriveApiSlow"}',
    external_url: str = "http://alertmanager-a:9093",
) -> dict[str, Any]:
    """A webhook v4 body."""
    alerts = alerts or (alert(),)
    if status is None:
        status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "voicedrive-receiver",
        "groupLabels": {"alertname": alerts[0]["labels"]["alertname"]},
        "commonLabels": dict(alerts[0]["labels"]),
        "commonAnnotations": dict(alerts[0]["annotations"]),
        "externalURL": external_url,
        "alerts": list(alerts),
    }


@dataclass
class Harness:
    """A receiver app on a test server, with the worker driven by hand."""

    client: TestClient[Any, Any]
    services: Services
    clock: FakeClock
    channels: dict[str, RecordingChannel] = field(default_factory=dict)
    # What the last post() processed.
    processed: list[Processed] = field(default_factory=list)

    @property
    def worker(self) -> OutboxWorker:
        """The outbox worker (not running by itself)."""
        return self.services.worker

    @property
    def store(self) -> SqlStore:
        """The store."""
        store = self.services.store
        assert isinstance(store, SqlStore)
        return store

    @property
    def processor(self) -> Processor:
        """The journal processor (not running by itself)."""
        return self.client.server.app[PROCESSOR]

    async def post(
        self, body: Any, *, token: str = TOKEN, raw: bytes | None = None, process: bool = True
    ) -> Any:
        """POST a payload and process what got journaled; returns the response (body read)."""
        data = raw if raw is not None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        resp = await self.client.post("/webhook", data=data, headers=headers)
        await resp.read()
        accepted = resp.status == 200 and process
        self.processed = await self.processor.process_pending() if accepted else []
        return resp

    async def ingest(self, body: Any) -> Processed:
        """POST a payload that must be accepted; what processing made of it."""
        resp = await self.post(body)
        assert resp.status == 200, await resp.text()
        receipt = (await resp.json())["receipt"]
        return next(p for p in self.processed if p.entry_id == receipt)

    async def drain(self, rounds: int = 10) -> int:
        """Process the journal, then run every channel's due work until nothing is due."""
        while await self.processor.process_pending():
            pass
        total = 0
        for _ in range(rounds):
            handled = 0
            for name in self.worker.channels:
                handled += await self.worker.run_channel_once(name)
            total += handled
            if handled == 0:
                break
        return total


@asynccontextmanager
async def postgres_harness(
    postgres: ThrowawayPostgres, config: ReceiverConfig, clock: FakeClock
) -> AsyncIterator[Harness]:
    """A Harness over a fresh database of the shared test cluster."""
    dsn = postgres.create_database(f"rx_{uuid.uuid4().hex[:10]}")
    async with harness(config, await open_postgres_store(dsn), clock) as h:
        yield h


@asynccontextmanager
async def harness(
    config: ReceiverConfig,
    store: SqlStore,
    clock: FakeClock,
    *,
    channels: dict[str, RecordingChannel] | None = None,
    seed: int = 7,
    instance: str = "local",
) -> AsyncIterator[Harness]:
    """A Harness over ``store`` (owning its journal rows as ``instance``); the store is closed
    afterwards."""
    channels = channels if channels is not None else {}
    for name in config.channels:
        channels.setdefault(name, RecordingChannel(name))
    secrets = resolve_secrets(config)
    metrics = ReceiverMetrics(channels=config.channels)
    worker = OutboxWorker(
        store=store,
        channels=channels,
        config=config,
        secrets=secrets,
        metrics=metrics,
        clock=clock,
        rng=random.Random(seed),
        owner="test",
    )
    svc = Services(
        config=config,
        secrets=secrets,
        store=store,
        channels=channels,
        metrics=metrics,
        render=plain_render,
        clock=clock,
        worker=worker,
        instance=instance,
    )
    client = TestClient(TestServer(create_app(svc, run_worker=False)))
    await client.start_server()
    try:
        yield Harness(client=client, services=svc, clock=clock, channels=channels)
    finally:
        await client.close()
        await store.close()
