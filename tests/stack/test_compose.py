"""docker-compose.yml is consistent with the repo's configs (Docker itself is not needed).

The stack shares one network namespace, so every address in the mounted Prometheus,
Alertmanager, exporter and Grafana configs is 127.0.0.1:<port>; these tests check that each such
port is the one a compose service is told to listen on.
"""

import re
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
NAMESPACE_OWNER = "stack"
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::?[?-][^}]*)?\}")


def compose() -> dict[str, Any]:
    """The parsed compose file."""
    loaded = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def services() -> dict[str, dict[str, Any]]:
    """Services by name."""
    found = compose()["services"]
    assert isinstance(found, dict)
    return found


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> repo path of every bind mount from the repository (``./...``)."""
    out = {}
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith("./"):
            out[target] = REPO / source
    return out


def mounted_file(service: str, target: str) -> Path:
    """The repo file mounted at ``target`` in ``service`` (directly or via a mounted folder)."""
    for container_path, repo_path in bind_mounts(services()[service]).items():
        if target == container_path:
            return repo_path
        prefix = container_path.rstrip("/") + "/"
        if target.startswith(prefix):
            return repo_path / target.removeprefix(prefix)
    raise AssertionError(f"{service}: nothing from the repo is mounted at {target}")


def _flag(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(args):
            return args[i + 1]
    return None


def listen_ports(service: dict[str, Any]) -> set[int]:
    """Ports a service is configured to listen on (flags and the env of known images)."""
    command = [str(a) for a in service.get("command", [])]
    env = {str(k): str(v) for k, v in service.get("environment", {}).items()}
    addresses = [
        _flag(command, "--web.listen-address"),
        _flag(command, "--admin.listen-address"),
        _flag(command, "--db.proxy-listen-address"),
        env.get("MP_SMTP_BIND_ADDR"),
        env.get("MP_UI_BIND_ADDR"),
    ]
    ports = {int(a.rsplit(":", 1)[1]) for a in addresses if a}
    for key in ("GF_SERVER_HTTP_PORT", "PGPORT"):
        if key in env:
            ports.add(int(env[key]))
    return ports


def service_on_port(port: int) -> str:
    """The one service of the shared namespace that listens on ``port``."""
    owners = [name for name, s in services().items() if port in listen_ports(s)]
    assert len(owners) == 1, f"port {port}: served by {owners or 'no service'}"
    return owners[0]


def loopback_port(address: str) -> int:
    """The port of ``127.0.0.1:PORT`` or ``http://127.0.0.1:PORT/...``."""
    parts = urlsplit(address if "//" in address else f"//{address}")
    assert parts.hostname == "127.0.0.1", address
    assert parts.port is not None, address
    return parts.port


def prometheus_config() -> dict[str, Any]:
    """The Prometheus config compose mounts."""
    path = mounted_file("prometheus", "/etc/prometheus/prometheus.yml")
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def alertmanager_config() -> dict[str, Any]:
    """The Alertmanager config compose mounts."""
    path = mounted_file("alertmanager", "/etc/alertmanager/alertmanager.yml")
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@pytest.mark.parametrize("name", sorted(services()))
def test_every_mounted_repo_file_exists(name: str) -> None:
    for target, path in bind_mounts(services()[name]).items():
        assert path.exists(), f"{name}: {path.relative_to(REPO)} (mounted at {target}) is missing"


def test_the_python_image_is_built_from_the_repo_dockerfile() -> None:
    built = [s for s in services().values() if "build" in s]
    assert {s["build"]["dockerfile"] for s in built} == {"Dockerfile"}
    assert (REPO / "Dockerfile").is_file()
    assert {"simulator", "exporter", "receiver"} <= {
        n for n, s in services().items() if "build" in s
    }


@pytest.mark.parametrize("name", sorted(services()))
def test_every_image_is_pinned_to_a_version(name: str) -> None:
    image = services()[name]["image"]
    repository, _, tag = image.rpartition(":")
    assert repository, f"{name}: {image} has no tag"
    assert tag != "latest"
    assert re.match(r"v?\d+(\.\d+)+", tag), f"{name}: {image} is not pinned to a version"


@pytest.mark.parametrize("name", sorted(services()))
def test_every_service_has_a_healthcheck(name: str) -> None:
    check = services()[name]["healthcheck"]
    assert check["test"][0] == "CMD"
    assert len(check["test"]) > 1


@pytest.mark.parametrize("name", sorted(set(services()) - {NAMESPACE_OWNER}))
def test_every_service_joins_the_shared_network_namespace(name: str) -> None:
    # Without it 127.0.0.1 in the mounted configs would be the service's own container.
    assert services()[name]["network_mode"] == f"service:{NAMESPACE_OWNER}"


def test_no_two_services_listen_on_the_same_port() -> None:
    seen: dict[int, str] = {}
    for name, service in services().items():
        for port in listen_ports(service):
            assert port not in seen, f"{name} and {seen[port]} both listen on {port}"
            seen[port] = name


@pytest.mark.parametrize(
    ("job", "service"),
    [
        ("voicedrive-exporter", "exporter"),
        ("voicedrive-receiver", "receiver"),
        ("alertmanager", "alertmanager"),
        ("prometheus", "prometheus"),
    ],
)
def test_each_prometheus_scrape_target_is_the_right_service(job: str, service: str) -> None:
    (scrape,) = [j for j in prometheus_config()["scrape_configs"] if j["job_name"] == job]
    targets = [t for sc in scrape["static_configs"] for t in sc["targets"]]
    assert targets
    assert {service_on_port(loopback_port(t)) for t in targets} == {service}


def test_prometheus_sends_alerts_to_the_alertmanager_service() -> None:
    targets = [
        t
        for am in prometheus_config()["alerting"]["alertmanagers"]
        for sc in am["static_configs"]
        for t in sc["targets"]
    ]
    assert {service_on_port(loopback_port(t)) for t in targets} == {"alertmanager"}


def test_prometheus_rule_files_are_mounted_beside_its_config() -> None:
    for pattern in prometheus_config()["rule_files"]:
        relative = PurePosixPath(pattern)
        folder = mounted_file("prometheus", str(PurePosixPath("/etc/prometheus") / relative.parent))
        assert list(folder.glob(relative.name)), f"no rule file matches {pattern}"


def alertmanager_addresses(integration: str, key: str) -> list[str]:
    """``key`` of every ``integration`` entry (e.g. webhook_configs' url) of every receiver."""
    return [
        entry[key]
        for receiver in alertmanager_config()["receivers"]
        for entry in receiver.get(integration, [])
    ]


def test_every_alertmanager_webhook_reaches_the_receiver_service() -> None:
    urls = alertmanager_addresses("webhook_configs", "url")
    assert urls
    assert {service_on_port(loopback_port(u)) for u in urls} == {"receiver"}


def test_the_alertmanagers_fallback_mail_reaches_the_mail_catcher_service() -> None:
    relays = alertmanager_addresses("email_configs", "smarthost")
    assert relays
    assert {service_on_port(loopback_port(r)) for r in relays} == {"mailcatcher"}


def test_the_alertmanager_token_file_is_the_receiver_token_secret() -> None:
    for receiver in alertmanager_config()["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            relative = hook["http_config"]["authorization"]["credentials_file"]
            # Alertmanager resolves relative paths against its config file's directory.
            expected = str(PurePosixPath("/etc/alertmanager") / relative)
            secrets = services()["alertmanager"]["secrets"]
            assert {"source": "receiver_token", "target": expected} in secrets


def test_the_receiver_reads_the_same_token_secret() -> None:
    receiver = services()["receiver"]
    assert "receiver_token" in receiver["secrets"]
    config = yaml.safe_load(
        mounted_file("receiver", "/etc/voicedrive-receiver/receiver.yml").read_text("utf-8")
    )
    assert config["server"]["auth"]["bearer_token_file"] == "/run/secrets/receiver_token"
    assert compose()["secrets"]["receiver_token"] == {"environment": "VOICEDRIVE_RECEIVER_TOKEN"}


def test_the_compose_receiver_config_passes_config_check() -> None:
    path = mounted_file("receiver", "/etc/voicedrive-receiver/receiver.yml")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "voicedrive_receiver.main",
            "--config.file",
            str(path),
            "--config.check",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_receiver_mails_the_stacks_mail_catcher() -> None:
    config = yaml.safe_load(
        mounted_file("receiver", "/etc/voicedrive-receiver/receiver.yml").read_text("utf-8")
    )
    email = config["channels"]["email"]
    assert email["host"] == "127.0.0.1"
    assert service_on_port(int(email["port"])) == "mailcatcher"


def test_the_exporter_probes_the_simulator_and_its_database_proxy() -> None:
    config = yaml.safe_load(
        mounted_file("exporter", "/etc/voicedrive-exporter/exporter.yml").read_text("utf-8")
    )
    assert service_on_port(loopback_port(config["api"]["base_url"])) == "simulator"
    dsns = [t["dsn"] for t in config["database"]["targets"]] + [
        config["notifications"]["sql"]["dsn"]
    ]
    for dsn in dsns:
        assert service_on_port(loopback_port(dsn.replace("postgresql://", "http://"))) == (
            "simulator"
        )


def test_grafana_is_provisioned_with_the_prometheus_service_and_the_dashboards() -> None:
    datasources = yaml.safe_load(
        mounted_file("grafana", "/etc/grafana/provisioning/datasources/prometheus.yml").read_text(
            "utf-8"
        )
    )
    (source,) = datasources["datasources"]
    assert service_on_port(loopback_port(source["url"])) == "prometheus"
    providers = yaml.safe_load(
        mounted_file("grafana", "/etc/grafana/provisioning/dashboards/voicedrive.yml").read_text(
            "utf-8"
        )
    )
    (provider,) = providers["providers"]
    dashboards = mounted_file("grafana", provider["options"]["path"])
    assert (dashboards / "voicedrive-overview.json").is_file()


def test_published_ports_are_on_the_hosts_loopback_only() -> None:
    for mapping in services()[NAMESPACE_OWNER]["ports"]:
        host, host_port, container_port = str(mapping).split(":")
        assert host == "127.0.0.1", mapping
        assert host_port == container_port, mapping


@pytest.mark.parametrize("port", [18080, 9917, 9918, 19090, 19093, 13000, 18025])
def test_user_facing_ports_are_published(port: int) -> None:
    published = {int(str(m).split(":")[2]) for m in services()[NAMESPACE_OWNER]["ports"]}
    assert port in published
    assert service_on_port(port)


def test_every_interpolated_variable_is_in_the_env_example() -> None:
    used = set(INTERPOLATION.findall(COMPOSE.read_text(encoding="utf-8")))
    used |= {s["environment"] for s in compose()["secrets"].values() if "environment" in s}
    example = REPO / ".env.example"
    defined = {
        line.split("=", 1)[0]
        for line in example.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    }
    assert used
    assert used <= defined, f"missing from .env.example: {sorted(used - defined)}"


def test_secret_values_are_never_written_into_the_compose_file() -> None:
    for name, service in services().items():
        for key, value in service.get("environment", {}).items():
            if re.search(r"PASSWORD|TOKEN|SECRET|DSN", key):
                assert "${" in str(value), f"{name}: {key} must come from .env"


def test_the_env_file_with_the_real_secrets_is_git_ignored() -> None:
    result = subprocess.run(
        ["git", "check-ignore", "-q", ".env"], cwd=REPO, capture_output=True, timeout=30
    )
    assert result.returncode == 0
