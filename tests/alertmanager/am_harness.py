"""A real prometheus-alertmanager on loopback, started from the repo's alertmanager.yml.

A plain module, not a conftest: a second ``conftest`` module would shadow the root one that
holds ``require_binary``.
"""

import copy
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import yaml

from binaries import require_binary, start_logged, stop, wait_ready
from voicedrive_common.throwaway_pg import free_port
from voicedrive_mixin.thresholds import load_thresholds

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "alertmanager" / "alertmanager.yml"
TOKEN = "test-receiver-token"
START_TIMEOUT_S = 15.0


def _alert_classes() -> dict[str, dict[str, str]]:
    # Labels as the rules give them, from the single source (mixin/thresholds.yml).
    classes = {}
    for a in load_thresholds():
        labels = {"severity": a.severity, "system": a.system, "component": a.component}
        if a.level is not None:
            labels["level"] = str(a.level)
        classes[a.name] = labels
    return classes


ALERT_CLASSES = _alert_classes()


def repo_config() -> dict[str, Any]:
    """The repo's Alertmanager config as a dict (a fresh copy for each caller to edit)."""
    loaded = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return copy.deepcopy(loaded)


def alert(
    alertname: str,
    *,
    system: str = "voicedrive",
    ended: bool = False,
    started_ago: timedelta = timedelta(minutes=1),
    annotations: dict[str, str] | None = None,
    **labels: str,
) -> dict[str, Any]:
    """An API v2 postable alert with its class's labels, started a minute ago.

    ``ended`` gives it an ``endsAt`` in the past: Alertmanager then holds it as resolved.
    An alert that started longer than group_wait ago is flushed at once (Alertmanager's
    dispatcher); Prometheus sends the firing time, so timing tests pass ``started_ago=0``.
    ``annotations`` replaces the default ``{"summary": alertname}``.
    """
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "labels": {
            "alertname": alertname,
            **ALERT_CLASSES.get(alertname, {}),
            "system": system,
            **labels,
        },
        "annotations": annotations if annotations is not None else {"summary": alertname},
        "startsAt": (now - started_ago).isoformat(),
        "generatorURL": "http://127.0.0.1/graph",
    }
    if ended:
        body["endsAt"] = (now - timedelta(seconds=1)).isoformat()
    return body


@dataclass
class RunningAlertmanager:
    """Handle on a started Alertmanager: post alerts, read their status, metrics and log."""

    url: str
    log: Path

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """POST alerts to /api/v2/alerts (as Prometheus does)."""
        status, _ = http_json(f"{self.url}/api/v2/alerts", alerts)
        assert status == 200

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert Alertmanager holds, with its status."""
        status, body = http_json(f"{self.url}/api/v2/alerts")
        assert status == 200
        assert isinstance(body, list)
        return body

    def metric(self, name: str, **labels: str) -> float | None:
        """The value of one sample on /metrics (labels given exactly), None when absent."""
        status, text = http_json(f"{self.url}/metrics")
        assert status == 200
        wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}")
        for line in str(text).splitlines():
            series, _, value = line.rpartition(" ")
            if series == wanted:
                return float(value)
        return None

    def states(self) -> dict[str, dict[str, Any]]:
        """Status of each alert keyed by alertname plus its other identifying labels."""
        return {alert_key(a["labels"]): a["status"] for a in self.alerts()}

    def wait_for_states(
        self, expected: dict[str, str], *, timeout_s: float = 10.0
    ) -> dict[str, dict[str, Any]]:
        """Poll until each named alert has the expected state ("active"/"suppressed")."""
        deadline = time.monotonic() + timeout_s
        while True:
            states = self.states()
            seen = {key: states[key]["state"] for key in expected if key in states}
            if seen == expected or time.monotonic() > deadline:
                return states
            time.sleep(0.1)


class _Recorder(BaseHTTPRequestHandler):
    """Records every POST (path, Authorization header, JSON body) and answers its status."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length))
        received = self.server.received  # type: ignore[attr-defined]
        received.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
        )
        self.send_response(self.server.status_for(len(received)))  # type: ignore[attr-defined]
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads the recorded requests, not a log."""


def always_ok(count: int) -> int:
    """200 for every request."""
    return 200


@contextmanager
def recording_http_server(
    status_for: Callable[[int], int] = always_ok,
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP server standing in for a webhook: (base URL, recorded requests).

    ``status_for(n)`` is the status of the n-th request (from 1): a receiver that refuses.
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    received: list[dict[str, Any]] = []
    server.received = received  # type: ignore[attr-defined]
    server.status_for = status_for  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def wait_until(condition: Callable[[], bool], *, timeout_s: float = 15.0) -> bool:
    """Poll ``condition()`` until true or the (bounded) timeout; returns the last result."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def http_json(url: str, payload: Any = None, *, timeout_s: float = 5.0) -> tuple[int, Any]:
    """GET (or POST ``payload`` as JSON to) a loopback URL; (status, JSON body or text)."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"tests talk to loopback only, not {url}")
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(  # noqa: S310 - scheme and host checked above
        url, data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
        raw = response.read().decode()
        is_json = response.headers.get_content_type() == "application/json"
        return response.status, (json.loads(raw) if is_json and raw.strip() else raw)


def alert_key(labels: dict[str, str]) -> str:
    """A readable identity for an alert in test assertions: its name and instance if any."""
    name = labels["alertname"]
    instance = labels.get("instance")
    system = labels.get("system")
    parts = [name] + [p for p in (system, instance) if p]
    return "/".join(parts)


class AlertmanagerProcesses:
    """Starts real Alertmanagers from the repo's config; ``stop_all()`` ends every one started.

    The repo file is used unchanged except for what a test must change: the receiver's address,
    the fallback's mail relay and Slack URL (tests never use the contract ports or the network),
    the secret files' paths, and optionally the timers.
    """

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._processes: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        *,
        webhook_base: str = "http://127.0.0.1:9",
        smarthost: str = "127.0.0.1:9",
        slack_url: str | None = "http://127.0.0.1:9/slack",
        timers: dict[str, str] | None = None,
    ) -> RunningAlertmanager:
        """Start one Alertmanager and wait until it is ready.

        Port 9 (discard) is where nothing listens: by default the receiver, the mail relay and
        Slack are all down. ``slack_url=None`` writes no Slack URL file at all. ``timers``
        replaces group_wait/group_interval/repeat_interval on every route.
        """
        binary = require_binary("prometheus-alertmanager")
        workdir = self._workdir / f"am{len(self._processes)}"
        workdir.mkdir()
        config = repo_config()
        token_file = workdir / "receiver-token"
        token_file.write_text(TOKEN + "\n", encoding="utf-8")
        slack_file = workdir / "fallback-slack-webhook-url"
        if slack_url is not None:
            slack_file.write_text(slack_url + "\n", encoding="utf-8")
        for receiver in config["receivers"]:
            for hook in receiver.get("webhook_configs", []):
                hook["url"] = hook["url"].replace("http://127.0.0.1:9918", webhook_base)
                hook["http_config"]["authorization"]["credentials_file"] = str(token_file)
            for mail in receiver.get("email_configs", []):
                mail["smarthost"] = smarthost
            for slack in receiver.get("slack_configs", []):
                slack["api_url_file"] = str(slack_file)
        if timers:
            config["route"].update(timers)
            for route in config["route"].get("routes", []):
                route.update(timers)
        config_file = workdir / "alertmanager.yml"
        config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
        port = free_port()
        log = workdir / "alertmanager.log"
        process = start_logged(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                # Empty disables clustering: no gossip port, no peers, nothing off loopback.
                "--cluster.listen-address=",
                "--log.level=debug",
            ],
            log,
        )
        self._processes.append(process)
        url = f"http://127.0.0.1:{port}"
        wait_ready(
            "alertmanager",
            process,
            log,
            lambda: http_json(f"{url}/-/ready", timeout_s=1)[0] == 200,
            timeout_s=START_TIMEOUT_S,
        )
        return RunningAlertmanager(url=url, log=log)

    def stop_all(self) -> None:
        """Terminate every Alertmanager this object started."""
        for process in self._processes:
            stop(process)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
