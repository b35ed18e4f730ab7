"""Configs the demo writes for Prometheus, Alertmanager and the receiver.

Prometheus and Alertmanager run with the repo's own ``prometheus/prometheus.yml`` (and its
generated rules) and ``alertmanager/alertmanager.yml``; the demo changes only what a loopback
run on other ports needs: addresses, file paths, and Prometheus' intervals (the demo probes
every few seconds). The receiver's demo config is embedded here: pages go to the console, a
file outbox and the demo's mail catcher, so no Slack or Twilio credentials are needed.
"""

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from voicedrive_demo.ports import DEFAULT_PORTS, HOST, Ports
from voicedrive_demo.timing import Timing, compress_routes, lifecycle_section

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "prometheus"
ALERTMANAGER_DIR = REPO / "alertmanager"
_LOOPBACK = re.compile(re.escape(HOST) + r":(\d+)\b")
_HEADER = "# Written by voicedrive-demo from {source} on every start: edit that file instead.\n"


def repo_configs_present() -> bool:
    """Whether this installation carries the repo's Prometheus and Alertmanager files."""
    return (PROMETHEUS_DIR / "prometheus.yml").is_file() and (
        ALERTMANAGER_DIR / "alertmanager.yml"
    ).is_file()


def remap_addresses(tree: Any, ports: Ports) -> Any:
    """``tree`` with every ``127.0.0.1:<default port>`` moved to the demo's port for it."""
    by_default = {str(port): ports[name] for name, port in DEFAULT_PORTS.items()}

    def swap(match: re.Match[str]) -> str:
        port = by_default.get(match.group(1))
        return f"{HOST}:{port}" if port is not None else match.group(0)

    if isinstance(tree, str):
        return _LOOPBACK.sub(swap, tree)
    if isinstance(tree, list):
        return [remap_addresses(item, ports) for item in tree]
    if isinstance(tree, dict):
        return {key: remap_addresses(value, ports) for key, value in tree.items()}
    return tree


def render_prometheus(*, ports: Ports, interval: str, rule_files: list[str] | None = None) -> str:
    """The repo's prometheus.yml on the demo's ports, rules by absolute path, short intervals.

    ``rule_files`` replaces the repo's rule files (the demo's rules generated with overrides).
    """
    source = PROMETHEUS_DIR / "prometheus.yml"
    config = remap_addresses(yaml.safe_load(source.read_text(encoding="utf-8")), ports)
    config["global"]["scrape_interval"] = interval
    config["global"]["evaluation_interval"] = interval
    timeout = config["global"].get("scrape_timeout")
    if timeout is not None:
        config["global"]["scrape_timeout"] = interval  # must not exceed the scrape interval
    config["rule_files"] = rule_files or [
        pattern if Path(pattern).is_absolute() else str(PROMETHEUS_DIR / pattern)
        for pattern in config.get("rule_files", [])
    ]
    return _HEADER.format(source=source) + yaml.safe_dump(config, sort_keys=False)


def render_alertmanager(*, ports: Ports, token_file: Path, timing: Timing | None = None) -> str:
    """The repo's alertmanager.yml on the demo's ports, with the demo's receiver token file;
    with ``timing``, every route's group_wait, group_interval and repeat_interval compressed.

    The fallback's mail goes to the demo's catcher (the repo names the contract's SMTP port,
    remapped like every other address). Its Slack integration is left out: the demo has no
    webhook URL and no network, and a missing URL file would only fail the Slack message
    (at its first attempt, again at every group_interval) and fill the log.
    """
    source = ALERTMANAGER_DIR / "alertmanager.yml"
    config = remap_addresses(yaml.safe_load(source.read_text(encoding="utf-8")), ports)
    if timing is not None:
        config["route"] = compress_routes(config["route"], timing)
    for receiver in config.get("receivers", []):
        receiver.pop("slack_configs", None)
        for webhook in receiver.get("webhook_configs", []):
            auth = webhook.get("http_config", {}).get("authorization")
            if auth is not None and "credentials_file" in auth:
                auth["credentials_file"] = str(token_file)
    return _HEADER.format(source=source) + yaml.safe_dump(
        config, sort_keys=False, allow_unicode=True
    )


_RECEIVER = """\
# Written by voicedrive-demo on every start (embedded defaults). Every key is documented in
# alertmanager/receiver.example.yml.
language: ja

server:
  auth:
    bearer_token_file: {token_file}
  metrics_auth: open
  external_url: {receiver_url}

store:
  sqlite:
    path: {store}

contacts:
  operator:
    display_name: 受信機オペレーター
  tech_lead:
    display_name: 技術責任者
    email: tech-lead@voicedrive.example
  hotline:
    display_name: 緊急ホットライン (24時間)
    email: hotline@voicedrive.example
  person_in_charge:
    display_name: 責任者 (直通)
    email: person-in-charge@voicedrive.example
  management:
    display_name: 経営層
    email: management@voicedrive.example

# Without Slack and Twilio credentials the demo stands in for them: the console channel (the
# emergency Slack channel's place) prints and appends to the file outbox; "sms" and "phone"
# are console channels too, each with its own file, so every level's channel stays visible.
channels:
  console:
    type: console
    stdout: true
    file: {outbox}
  email:
    type: email
    host: 127.0.0.1
    port: {smtp_port}
    security: none
    from: alerts@voicedrive.example
    from_name: VoiceDrive 監視
  sms:
    type: console
    stdout: true
    file: {sms_outbox}
  phone:
    type: console
    send_resolved: false   # stands in for the phone call, which never rings for a recovery
    stdout: true
    file: {phone_outbox}

fanout:
  cumulative: true
  targets:
    - {{level: 1, channel: console, to: [operator]}}
    - {{level: 2, channel: email, to: [tech_lead]}}
    - {{level: 3, channel: sms, to: [hotline]}}
    - {{level: 4, channel: phone, to: [person_in_charge]}}
    - {{level: 4, channel: email, to: [management]}}

outbox:
  dead_letter_report:
    - {{channel: console, to: [operator]}}
"""

# The daily check asks who is on duty: in the demo, the technical lead around the clock.
_SCHEDULE: dict[str, Any] = {
    "fallback": {"name": "24時間緊急ホットライン", "contacts": ["hotline"]},
    "shifts": [
        {
            "name": "デモ当番（終日）",
            "weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "start": "00:00",
            "end": "24:00",
            "team": "voicedrive",
            "contacts": ["tech_lead"],
        }
    ],
}


def render_receiver(
    *,
    ports: Ports,
    token_file: Path,
    store: Path,
    outbox: Path,
    channel_outboxes: Mapping[str, Path] | None = None,
    timing: Timing | None = None,
) -> str:
    """The receiver config of the demo: console + file outboxes + mail to the catcher.

    ``channel_outboxes`` gives the files of the SMS and phone stand-ins (default: beside
    ``outbox``); ``timing`` compresses the lifecycle's timers.
    """
    files = {name: outbox.with_name(f"outbox-{name}.jsonl") for name in ("sms", "phone")}
    files.update(channel_outboxes or {})
    text = _RECEIVER.format(
        token_file=token_file,
        receiver_url=ports.url("receiver"),
        store=store,
        outbox=outbox,
        sms_outbox=files["sms"],
        phone_outbox=files["phone"],
        smtp_port=ports["smtp"],
    )
    extra: dict[str, Any]
    if timing is not None:
        extra = lifecycle_section(timing, prometheus_url=ports.url("prometheus"))
    else:
        extra = {"lifecycle": {"daily_check": {"prometheus_url": ports.url("prometheus")}}}
    extra["lifecycle"]["schedule"] = _SCHEDULE
    return text + "\n" + yaml.safe_dump(extra, sort_keys=False, allow_unicode=True)
