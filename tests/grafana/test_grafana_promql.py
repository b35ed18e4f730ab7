"""Every expression on the overview dashboard parses in a real Prometheus."""

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from binaries import require_binary, start_logged, stop, wait_ready
from voicedrive_common.throwaway_pg import free_port
from voicedrive_mixin import dashboards
from voicedrive_mixin.thresholds import load_thresholds

pytestmark = pytest.mark.integration

START_TIMEOUT_S = 20.0
# What Grafana substitutes before sending a query; Prometheus itself knows no such variables.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "30s", "$__range": "1h"}


def expressions() -> list[tuple[str, str]]:
    """(panel title and refId, PromQL with Grafana's variables substituted) for every target."""
    out = []
    board = dashboards.dashboard(load_thresholds())
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            out.append((f"{panel['title']} {target['refId']}", expr))
    return out


def query(base: str, expr: str) -> tuple[int, dict[str, Any]]:
    """Run an instant query; (HTTP status, decoded body). A parse error answers 400."""
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(url)
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus with an empty config on a free loopback port; yields its URL."""
    binary = require_binary("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    config = workdir / "prometheus.yml"
    config.write_text("global: {}\n", encoding="utf-8")
    port = free_port()
    log = workdir / "prometheus.log"
    process = start_logged(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(
            "prometheus",
            process,
            log,
            lambda: query(base, "1")[0] == 200,
            timeout_s=START_TIMEOUT_S,
        )
        yield base
    finally:
        stop(process)


@pytest.mark.parametrize(("where", "expr"), expressions(), ids=[w for w, _ in expressions()])
def test_expression_is_accepted_by_prometheus(prometheus: str, where: str, expr: str) -> None:
    status, body = query(prometheus, expr)
    assert (status, body["status"]) == (200, "success"), f"{where}: {expr}: {body.get('error')}"


def test_a_malformed_expression_is_rejected(prometheus: str) -> None:
    # The check above means something only if Prometheus does refuse what does not parse.
    status, body = query(prometheus, "sum by (channel (voicedrive_receiver_outbox_depth)")
    assert (status, body["errorType"]) == (400, "bad_data")


def test_no_grafana_variable_is_left_unsubstituted() -> None:
    assert not [expr for _, expr in expressions() if "$" in expr]
