"""The generated rules in a real Prometheus, scraping the real exporter probing the simulator.

Everything runs on loopback with short intervals: probes every second, scrape and evaluation
every second, and `for` durations shortened through the overrides mechanism a deployment would
use (`voicedrive-mixin --overrides ... --output-dir ...`), so the rules under test are the
generated ones, not a hand-edited copy.
"""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from rules_helpers import require_binary

from voicedrive_common.throwaway_pg import ThrowawayPostgres, free_port

pytestmark = pytest.mark.integration

ADMIN_TOKEN = "rules-integration-admin-token"
START_TIMEOUT_S = 30.0
ALERT_TIMEOUT_S = 40.0

# The shortened timings. The loader checks what production keeps: APISlow's `for` longer than
# its window, and every inhibiting alert's `for` shorter than its targets'.
OVERRIDES = {
    "alerts": {
        "VoiceDriveAPISlow": {"params": {"window": "6s"}, "for": "7s"},
        "VoiceDriveSystemDown": {"for": "1s"},
        "VoiceDriveAPIDown": {"for": "3s"},
        "VoiceDriveDatabaseDown": {"for": "3s"},
        "VoiceDriveExporterDown": {"for": "3s"},
    }
}
API_SLOW_FOR_S = 7.0
DB_DOWN_FOR_S = 3.0
EXPORTER_DOWN_FOR_S = 3.0


@dataclass
class Stack:
    """Addresses of the running simulator, exporter and Prometheus."""

    admin_url: str
    exporter_url: str
    prometheus_url: str
    procs: "Processes"


def _get(url: str, *, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback http)
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def _admin(stack: Stack, method: str, path: str, body: object | None = None) -> None:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(  # noqa: S310 (loopback http)
        f"{stack.admin_url}{path}",
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
        assert resp.status == 200


def _wait(what: str, check: Callable[[], bool], timeout: float) -> float:
    """Poll ``check`` every 0.25 s until true; returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:g}s waiting for {what}")


def _alerts(stack: Stack, name: str) -> list[dict[str, Any]]:
    status, body = _get(f"{stack.prometheus_url}/api/v1/alerts")
    assert status == 200
    alerts: list[dict[str, Any]] = json.loads(body)["data"]["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == name]


def _firing(stack: Stack, name: str) -> list[dict[str, Any]]:
    return [a for a in _alerts(stack, name) if a["state"] == "firing"]


def _target_up(stack: Stack) -> bool:
    status, body = _get(f"{stack.prometheus_url}/api/v1/query?query=up")
    if status != 200:
        return False
    results = json.loads(body)["data"]["result"]
    return any(
        r["metric"].get("job") == "voicedrive-exporter" and r["value"][1] == "1" for r in results
    )


class Processes:
    """Started programs; each is stopped (SIGTERM, then SIGKILL) at the end."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.commands: dict[str, tuple[list[str], dict[str, str]]] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        """Start ``argv`` with output appended to ``<logdir>/<name>.log``."""
        self.commands[name] = (argv, env or {})
        with (self.logdir / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
            )

    def restart(self, name: str) -> None:
        """Start ``name`` again with its original command line."""
        argv, env = self.commands[name]
        self.start(name, argv, env)

    def exited(self) -> str | None:
        """The name of a program that has already exited, if any."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                return name
        return None

    def logs(self) -> str:
        """The tail of every program's log, for failure messages."""
        parts = []
        for name in self.procs:
            text = (self.logdir / f"{name}.log").read_text(encoding="utf-8", errors="replace")
            parts.append(f"--- {name}\n{text[-3000:]}")
        return "\n".join(parts)

    def stop_one(self, name: str) -> None:
        """SIGTERM ``name`` and wait for it (SIGKILL after 10 s)."""
        proc = self.procs[name]
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def stop(self) -> None:
        """Stop everything, newest first."""
        for name in reversed(list(self.procs)):
            self.stop_one(name)


def _bin(name: str) -> str:
    """A console script of this project, next to the running interpreter."""
    return str(Path(sys.executable).parent / name)


# A port found free can be taken by another process (an outgoing connection's ephemeral
# port) before the program binds it: the whole stack is then started again on new ports.
START_ATTEMPTS = 3


def _launch(
    tmp: Path, postgres: ThrowawayPostgres, prometheus_bin: str, rules: Path, database: str
) -> tuple[Processes, Stack]:
    """Start the three programs on fresh ports; wait until Prometheus scrapes the exporter."""
    procs = Processes(tmp)
    api_port, admin_port, proxy_port = free_port(), free_port(), free_port()
    exporter_port, prometheus_port = free_port(), free_port()
    exporter_config = {
        "global": {"interval": "1s", "timeout": "900ms"},
        "api": {"base_url": f"http://127.0.0.1:{api_port}"},
        "database": {
            "targets": [
                {
                    "name": "voicedrive",
                    "dsn": f"postgresql://{postgres.user}@127.0.0.1:{proxy_port}/{database}",
                    "password": "${RULES_IT_DB_PASSWORD}",
                    "connect_timeout": "400ms",
                    "query_timeout": "300ms",
                }
            ]
        },
        # Off (the host's load is not under test); the sample window must still fit the timeout.
        "host": {"enabled": False, "cpu_sample_window": "100ms"},
    }
    (tmp / "exporter.yml").write_text(yaml.safe_dump(exporter_config), encoding="utf-8")
    prometheus_config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": "voicedrive-exporter",
                "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}],
            }
        ],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config), encoding="utf-8")
    procs.start(
        "simulator",
        [
            _bin("voicedrive-sim"),
            f"--web.listen-address=127.0.0.1:{api_port}",
            f"--admin.listen-address=127.0.0.1:{admin_port}",
            f"--db.proxy-listen-address=127.0.0.1:{proxy_port}",
            f"--db.proxy-target={postgres.host}:{postgres.port}",
        ],
        env={"VOICEDRIVE_SIM_ADMIN_TOKEN": ADMIN_TOKEN},
    )
    procs.start(
        "exporter",
        [
            _bin("voicedrive-exporter"),
            f"--config.file={tmp / 'exporter.yml'}",
            f"--web.listen-address=127.0.0.1:{exporter_port}",
        ],
        env={"RULES_IT_DB_PASSWORD": postgres.password},
    )
    procs.start(
        "prometheus",
        [
            prometheus_bin,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
            "--log.level=warn",
        ],
    )
    result = Stack(
        admin_url=f"http://127.0.0.1:{admin_port}",
        exporter_url=f"http://127.0.0.1:{exporter_port}",
        prometheus_url=f"http://127.0.0.1:{prometheus_port}",
        procs=procs,
    )
    try:
        _wait(
            "Prometheus to scrape the exporter",
            lambda: procs.exited() is not None or _target_up(result),
            START_TIMEOUT_S,
        )
    except pytest.fail.Exception:
        procs.stop()
        pytest.fail(procs.logs(), pytrace=False)
    return procs, result


@pytest.fixture(scope="module")
def stack(postgres: ThrowawayPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Simulator (with its database proxy in front of PostgreSQL), exporter and Prometheus."""
    prometheus_bin = require_binary("prometheus")
    tmp = tmp_path_factory.mktemp("rules-integration")
    database = "rules_integration"
    postgres.create_database(database)

    overrides = tmp / "overrides.yml"
    overrides.write_text(yaml.safe_dump(OVERRIDES), encoding="utf-8")
    generated = subprocess.run(
        [_bin("voicedrive-mixin"), "--overrides", str(overrides), "--output-dir", str(tmp)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert generated.returncode == 0, generated.stderr
    rules = tmp / "prometheus" / "rules" / "voicedrive.rules.yml"

    for attempt in range(1, START_ATTEMPTS + 1):
        run_dir = tmp / f"attempt-{attempt}"
        run_dir.mkdir()
        procs, result = _launch(run_dir, postgres, prometheus_bin, rules, database)
        exited = procs.exited()
        if exited is None:
            break
        logs = procs.logs()
        procs.stop()
        if attempt == START_ATTEMPTS or "address already in use" not in logs:
            pytest.fail(f"{exited} exited early\n{logs}", pytrace=False)
    try:
        yield result
    finally:
        procs.stop()


def test_injected_latency_fires_api_slow_and_clearing_it_resolves(stack: Stack) -> None:
    _wait("a healthy baseline", lambda: not _alerts(stack, "VoiceDriveAPISlow"), ALERT_TIMEOUT_S)
    # Only /health is slowed: the alert is per endpoint, /api/status stays quiet.
    _admin(stack, "PUT", "/admin/faults/api", {"endpoint": "/health", "latency_seconds": 0.6})
    try:
        took = _wait(
            "VoiceDriveAPISlow firing",
            lambda: bool(_firing(stack, "VoiceDriveAPISlow")),
            ALERT_TIMEOUT_S,
        )
        alerts = _alerts(stack, "VoiceDriveAPISlow")
    finally:
        _admin(stack, "DELETE", "/admin/faults")
    assert took >= API_SLOW_FOR_S
    [alert] = alerts
    assert alert["labels"] == {
        "alertname": "VoiceDriveAPISlow",
        "endpoint": "/health",
        "level": "2",
        "severity": "warning",
        "system": "voicedrive",
        "component": "api",
    }
    description = alert["annotations"]["description"]
    assert description.startswith("/health の応答時間の 95% 分位点（直近 6s）は ")
    assert description.endswith("で、しきい値 500ms を 7s 以上超えています。")
    # Cleared: the slow answers leave the 6 s window and the alert resolves.
    _wait("VoiceDriveAPISlow resolved", lambda: not _alerts(stack, "VoiceDriveAPISlow"), 30)


def test_database_proxy_down_fires_database_down_and_bringing_it_back_resolves(
    stack: Stack,
) -> None:
    _wait(
        "a healthy database baseline",
        lambda: not _alerts(stack, "VoiceDriveDatabaseDown"),
        ALERT_TIMEOUT_S,
    )
    _admin(stack, "PUT", "/admin/faults/db", {"down": True})
    try:
        took = _wait(
            "VoiceDriveDatabaseDown firing",
            lambda: bool(_firing(stack, "VoiceDriveDatabaseDown")),
            ALERT_TIMEOUT_S,
        )
        [alert] = _firing(stack, "VoiceDriveDatabaseDown")
        # The API still answers: this is Level 3, not the Level 4 composite.
        assert not _alerts(stack, "VoiceDriveSystemDown")
    finally:
        _admin(stack, "DELETE", "/admin/faults")
    assert took >= DB_DOWN_FOR_S
    assert alert["labels"]["database"] == "voicedrive"
    assert alert["labels"]["level"] == "3"
    _wait(
        "VoiceDriveDatabaseDown resolved", lambda: not _alerts(stack, "VoiceDriveDatabaseDown"), 30
    )


def test_stopping_the_exporter_fires_exporter_down_and_restarting_it_resolves(
    stack: Stack,
) -> None:
    _wait("the exporter scraped", lambda: _target_up(stack), START_TIMEOUT_S)
    stack.procs.stop_one("exporter")
    try:
        took = _wait(
            "VoiceDriveExporterDown firing",
            lambda: bool(_firing(stack, "VoiceDriveExporterDown")),
            ALERT_TIMEOUT_S,
        )
        [alert] = _firing(stack, "VoiceDriveExporterDown")
        # Blind, not down: the probe alerts must not fire on the vanished series.
        assert not _alerts(stack, "VoiceDriveAPIDown")
        assert not _alerts(stack, "VoiceDriveDatabaseDown")
    finally:
        stack.procs.restart("exporter")
    assert took >= EXPORTER_DOWN_FOR_S
    assert alert["labels"] == {
        "alertname": "VoiceDriveExporterDown",
        "job": "voicedrive-exporter",
        "instance": stack.exporter_url.removeprefix("http://"),
        "level": "3",
        "severity": "critical",
        "system": "voicedrive",
        "component": "monitoring",
    }
    _wait(
        "VoiceDriveExporterDown resolved", lambda: not _alerts(stack, "VoiceDriveExporterDown"), 30
    )
