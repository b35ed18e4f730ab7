"""Config validation: one small invalid file per rule, paired with the message expected."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from rx_helpers import FAKE_TYPES, config_text, make_config

from voicedrive_common.confload import parse_yaml
from voicedrive_common.errors import ConfigError
from voicedrive_receiver.config import (
    BearerAuth,
    PostgresStoreConfig,
    load_config,
    parse_config,
    resolve_secrets,
)
from voicedrive_receiver.main import instance_name

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "alertmanager" / "receiver.example.yml"
MINIMAL = """
server: {auth: none}
channels:
  slack: {type: slack}
contacts:
  room: {}
fanout:
  targets:
    - {level: 1, channel: slack, to: [room]}
"""


def parse(text: str) -> None:
    parse_config(parse_yaml(text), channel_types=FAKE_TYPES)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour: blue\n", "<root>: unknown key 'colour'"),
        ("server: {max_body: 10}\n", "server: unknown key 'max_body'"),
        ("language: fr\n", "language: must be one of ja, en; got 'fr'"),
        ("levels: {default: 5}\n", "levels.default: must be a level 1, 2, 3 or 4, got 5"),
        (
            "levels: {rules: [{matchers: ['sev=~\"(\"'], level: 2}]}\n",
            "levels.rules[0].matchers[0]: invalid regular expression '('",
        ),
        (
            "levels: {rules: [{matchers: ['no operator'], level: 2}]}\n",
            "levels.rules[0].matchers[0]: invalid matcher 'no operator'",
        ),
        ("channels: {x: {type: pager}}\n", "channels.x.type: must be one of"),
        (
            "channels: {s: {type: slack}}\nfanout: {targets: [{level: 1, channel: t, to: [a]}]}\n",
            "fanout.targets[0].channel: unknown channel 't' (known: s)",
        ),
        (
            "channels: {s: {type: slack}}\nfanout: {targets: [{level: 1, channel: s, to: [a]}]}\n",
            "fanout.targets[0].to[0]: unknown contact 'a'",
        ),
        (
            "channels: {m: {type: sms}}\ncontacts: {lead: {email: a@b.c}}\n"
            "fanout: {targets: [{level: 3, channel: m, to: [lead]}]}\n",
            "fanout.targets[0].to[0]: contact 'lead' has no sms address for channel 'm'",
        ),
        ("teams: {t: {members: [ghost]}}\n", "teams.t.members[0]: unknown contact 'ghost'"),
        ("roles: {r: {team: nobody}}\n", "roles.r.team: unknown team 'nobody'"),
        (
            "store: {sqlite: {path: a.db}, postgres: {dsn: x}}\n",
            "store.postgres: set either store.sqlite or store.postgres, not both",
        ),
        ("store: {postgres: {}}\n", "store.postgres.dsn: is required (or dsn_file)"),
        (
            "server: {auth: {bearer_token: a, basic: {username: u, password: p}}}\n",
            "server.auth.basic: set either bearer_token or basic, not both",
        ),
        ("server: {metrics_auth: same}\n", "server.metrics_auth: 'same' needs server.auth"),
        ("outbox: {attempts: 0}\n", "outbox.attempts: must be at least 1, got 0"),
        (
            "outbox: {backoff_base: 1m, backoff_max: 10s}\n",
            "outbox.backoff_max: must be at least backoff_base",
        ),
        ("incidents: {reopen_within: soon}\n", "incidents.reopen_within: invalid duration 'soon'"),
        ("server: {instance: 'rx 0'}\n", "server.instance: must be 1-200 letters, digits"),
    ],
)
def test_invalid_config_is_rejected_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert str(caught.value).startswith(message)


def test_a_minimal_config_has_the_documented_defaults() -> None:
    config = parse_config(parse_yaml(MINIMAL), channel_types=FAKE_TYPES)
    assert config.language == "ja"
    assert config.levels.default == 2
    assert config.server.max_body_bytes == 1 << 20
    assert config.outbox.attempts == 8
    assert config.incidents.reopen_within == 1800.0
    assert config.fanout.cumulative is True


def test_config_without_server_auth_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        parse(MINIMAL.replace("server: {auth: none}\n", ""))
    assert str(caught.value).startswith("server.auth: is required")


def test_auth_none_runs_without_authentication_only_when_said_explicitly() -> None:
    config = parse_config(parse_yaml(MINIMAL), channel_types=FAKE_TYPES)
    assert config.server.auth is None


@pytest.mark.parametrize("auth", ["{}", "off", "null"])
def test_auth_that_is_neither_credentials_nor_none_is_refused(auth: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(MINIMAL.replace("{auth: none}", f"{{auth: {auth}}}"))
    assert str(caught.value).startswith("server.auth")


def test_secrets_are_not_read_at_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RX_TEST_TOKEN", raising=False)
    text = config_text(tmp_path).replace(
        "bearer_token: test-token-123", "bearer_token: ${RX_TEST_TOKEN}"
    )
    config = parse_config(parse_yaml(text), channel_types=FAKE_TYPES)
    assert isinstance(config.server.auth, BearerAuth)


def test_a_missing_secret_at_start_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RX_HOTLINE", raising=False)
    text = config_text(tmp_path).replace('"+819000000002"', '"${RX_HOTLINE}"')
    config = parse_config(parse_yaml(text), channel_types=FAKE_TYPES)
    with pytest.raises(ConfigError) as caught:
        resolve_secrets(config)
    assert str(caught.value) == "contacts.hotline.sms: environment variable RX_HOTLINE is not set"


def test_a_secret_file_is_read_at_start(tmp_path: Path) -> None:
    secret = tmp_path / "dsn"
    secret.write_text("postgresql://u:p@127.0.0.1/db\n")
    config = make_config(tmp_path, store=f"postgres: {{dsn_file: {secret}}}")
    assert isinstance(config.store, PostgresStoreConfig)
    resolved = resolve_secrets(config)
    assert resolved.store_dsn is not None
    assert resolved.store_dsn.reveal() == "postgresql://u:p@127.0.0.1/db"


def test_the_example_config_loads_with_the_real_channel_registry() -> None:
    config = load_config(EXAMPLE)
    assert set(config.channels) >= {"slack", "email", "sms", "phone", "ticketing", "console"}
    assert {c.kind for c in config.channels.values()} == {
        "slack",
        "email",
        "sms",
        "phone",
        "webhook",
        "console",
    }


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VOICEDRIVE_", "TWILIO_", "MEDICAL_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "voicedrive_receiver.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        env={**clean, **(env or {})},
    )


def test_config_check_passes_on_the_example_with_no_secrets_set() -> None:
    result = _cli("--config.file", "alertmanager/receiver.example.yml", "--config.check")
    assert result.returncode == 0, result.stderr
    assert "config OK" in result.stdout


def test_config_check_with_resolve_secrets_names_the_first_missing_one() -> None:
    result = _cli(
        "--config.file", "alertmanager/receiver.example.yml", "--config.check", "--resolve-secrets"
    )
    assert result.returncode == 1
    assert "environment variable VOICEDRIVE_" in result.stderr


def test_config_check_reports_the_key_path_of_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("levels: {default: 9}\n")
    result = _cli("--config.file", str(bad), "--config.check")
    assert result.returncode == 1
    assert "levels.default: must be a level 1, 2, 3 or 4, got 9" in result.stderr


def test_the_instance_name_is_host_and_port_unless_configured() -> None:
    config = parse_config(parse_yaml(MINIMAL), channel_types=FAKE_TYPES)
    assert instance_name(config, ("127.0.0.1", 9095)) == f"{socket.gethostname()}:9095"


def test_a_configured_instance_name_survives_a_new_host_name() -> None:
    text = MINIMAL.replace("server: {auth: none}", "server: {auth: none, instance: receiver-0}")
    config = parse_config(parse_yaml(text), channel_types=FAKE_TYPES)
    assert instance_name(config, ("127.0.0.1", 9095)) == "receiver-0"


def test_config_check_with_resolve_secrets_names_a_missing_store_directory(
    tmp_path: Path,
) -> None:
    config = tmp_path / "rx.yml"
    config.write_text(
        "server: {auth: {bearer_token: t}}\n"
        f"store: {{sqlite: {{path: {tmp_path / 'missing' / 'rx.db'}}}}}\n"
        "channels: {console: {type: console}}\n"
        "contacts: {room: {}}\n"
        "fanout: {targets: [{level: 1, channel: console, to: [room]}]}\n"
    )
    result = _cli("--config.file", str(config), "--config.check", "--resolve-secrets")
    assert result.returncode == 1
    assert "store.sqlite.path: directory" in result.stderr


def test_config_check_warns_that_the_examples_schedule_has_ended() -> None:
    # The example's schedule is the protocol's Phase 2 week (2025-09-01 to 09-06).
    result = _cli("--config.file", "alertmanager/receiver.example.yml", "--config.check")
    assert result.returncode == 0, result.stderr
    assert "WARNING: on-call schedule has ended: every on_duty page goes to its fallback" in (
        result.stdout
    )
    assert "since 2025-09-06T00:00:00+09:00 (alertmanager/schedule.phase2.yml)" in result.stdout
