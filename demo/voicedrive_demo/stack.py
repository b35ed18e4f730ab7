"""The demo's stack: its working directory and the list of services the launcher starts.

To add a part, write one function returning its ``Service`` (command line, ready checks,
environment), call it from ``build_services`` in start order, and give it a port in
``ports.DEFAULT_PORTS``; the supervisor does the rest.
"""

import importlib.util
import os
import secrets
import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from voicedrive_demo.exporter_config import render_exporter_config
from voicedrive_demo.ports import Ports
from voicedrive_demo.services import Service, console_script
from voicedrive_demo.stack_configs import (
    render_alertmanager,
    render_prometheus,
    render_receiver,
    repo_configs_present,
)
from voicedrive_demo.timing import Timing, write_rules

DATABASE = "voicedrive"
# The demo probes and scrapes every few seconds so that an injected fault shows within
# moments; production keeps the protocol's 30 s (P4).
PROBE_INTERVAL = "5s"
# Channels the demo's receiver stands in for with console channels writing their own files.
STAND_INS = ("sms", "phone")
PROMETHEUS_BIN = "prometheus"
ALERTMANAGER_BIN = "prometheus-alertmanager"


@dataclass(frozen=True)
class Layout:
    """Files of one demo run under its directory (``./.demo`` by default, git-ignored)."""

    root: Path

    @property
    def logs(self) -> Path:
        """One log file per service."""
        return self.root / "logs"

    @property
    def token_file(self) -> Path:
        """The simulator's admin bearer token (mode 0600)."""
        return self.root / "sim-admin-token"

    @property
    def receiver_token_file(self) -> Path:
        """The token Alertmanager sends to the receiver (mode 0600)."""
        return self.root / "receiver-token"

    @property
    def db_password_file(self) -> Path:
        """The database password the exporter reads (mode 0600)."""
        return self.root / "db-password"

    @property
    def backups(self) -> Path:
        """Where the fake backup lives, for the backup freshness probe."""
        return self.root / "backups"

    @property
    def mail(self) -> Path:
        """Every mail the catcher received, one ``.eml`` file each."""
        return self.root / "mail"

    @property
    def outbox(self) -> Path:
        """The receiver's console channel as JSON lines (the "file outbox")."""
        return self.root / "outbox.jsonl"

    def channel_outbox(self, name: str) -> Path:
        """The file outbox of the SMS (``sms``) or phone (``phone``) stand-in channel."""
        return self.root / f"outbox-{name}.jsonl"

    def config(self, name: str) -> Path:
        """Where the demo writes the config of ``name``."""
        return self.root / f"{name}.yml"

    def data(self, name: str) -> Path:
        """State directory of ``name`` (fresh on every start)."""
        return self.root / "data" / name

    def prepare(self, *, db_password: str) -> None:
        """Create the directory afresh for one run: tokens, password, fake backup, no old state."""
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in (self.root / "data", self.mail, self.root / "rules"):
            shutil.rmtree(stale, ignore_errors=True)
        self.outbox.unlink(missing_ok=True)
        for name in STAND_INS:
            self.channel_outbox(name).unlink(missing_ok=True)
        for directory in (self.logs, self.backups, self.mail, self.root / "data"):
            directory.mkdir(parents=True, exist_ok=True)
        _write_private(self.token_file, secrets.token_urlsafe(24) + "\n")
        _write_private(self.receiver_token_file, secrets.token_urlsafe(24) + "\n")
        _write_private(self.db_password_file, db_password + "\n")
        for old in self.backups.glob("voicedrive-*.dump"):
            old.unlink()  # only this demo's own fakes: a fresh one per run
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        # Content does not matter: the probe looks at the newest matching file's age.
        (self.backups / f"voicedrive-{stamp}.dump").write_bytes(b"PGDMP demo backup\n")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(path, 0o600)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def exporter_available() -> bool:
    """Whether the exporter package is installed with its entry point."""
    return _installed("voicedrive_exporter.main")


def alerting_missing() -> list[str]:
    """What the alerting half of the demo lacks here (empty: it can start)."""
    missing = [name for name in (PROMETHEUS_BIN, ALERTMANAGER_BIN) if shutil.which(name) is None]
    if not _installed("voicedrive_receiver.main"):
        missing.append("voicedrive_receiver")
    if not _installed("aiosmtpd"):
        missing.append("aiosmtpd")
    if not repo_configs_present():
        missing.append("the repo's prometheus/ and alertmanager/ files")
    return missing


@dataclass(frozen=True)
class Stack:
    """What the service definitions need to know about this run."""

    ports: Ports
    layout: Layout
    db_user: str
    db_dsn_direct: str
    # The end-to-end test (tests/e2e) probes faster; the demo keeps its defaults.
    probe_interval: str = PROBE_INTERVAL
    probe_timeout: str = "4s"
    # The demo's compressed time (None: production timings of the rules, Alertmanager and
    # the receiver's lifecycle; only the probe interval above is shorter).
    timing: Timing | None = None


def build_services(stack: Stack, *, with_exporter: bool, with_alerting: bool) -> list[Service]:
    """Every service of the demo, in start order."""
    services = [simulator(stack)]
    if with_exporter:
        services.append(exporter(stack))
    if with_alerting:
        services += [smtp_catcher(stack), receiver(stack), alertmanager(stack), prometheus(stack)]
    return services


def simulator(stack: Stack) -> Service:
    """The stand-in VoiceDrive API, its database proxy and the delivery-row writer."""
    ports = stack.ports
    return Service(
        name="simulator",
        argv=(
            *console_script("voicedrive-sim", "voicedrive_sim"),
            "--web.listen-address",
            ports.address("sim-api"),
            "--admin.listen-address",
            ports.address("sim-admin"),
            "--admin.token-file",
            str(stack.layout.token_file),
            "--db.rows-per-second",
            "4",
            "--db.failure-ratio",
            "0.01",
            "--db.proxy-listen-address",
            ports.address("db-proxy"),
            "--db.proxy-target",
            ports.address("postgres"),
        ),
        # The writer talks to PostgreSQL directly, so taking the proxy down (the database
        # fault) does not stop the deliveries the notification probe reads afterwards.
        env={"VOICEDRIVE_SIM_DB_DSN": stack.db_dsn_direct},
        ready=(ports.url("sim-api", "/health"), f"tcp://{ports.address('db-proxy')}"),
    )


def exporter(stack: Stack) -> Service:
    """The exporter with every probe configured."""
    ports, layout = stack.ports, stack.layout
    config = layout.config("exporter")
    config.write_text(
        render_exporter_config(
            ports=ports,
            database=DATABASE,
            db_user=stack.db_user,
            password_file=layout.db_password_file,
            backup_glob=str(layout.backups / "*.dump"),
            interval=stack.probe_interval,
            timeout=stack.probe_timeout,
            notification_window=stack.timing.notification_window if stack.timing else "5m",
        ),
        encoding="utf-8",
    )
    return Service(
        name="exporter",
        argv=(
            *console_script("voicedrive-exporter"),
            "--config.file",
            str(config),
            "--web.listen-address",
            ports.address("exporter"),
        ),
        ready=(ports.url("exporter", "/-/ready"),),
    )


def smtp_catcher(stack: Stack) -> Service:
    """An SMTP server keeping every mail the receiver sends as a file."""
    return Service(
        name="smtp",
        argv=(
            sys.executable,
            "-m",
            "voicedrive_demo.smtp_catcher",
            "--listen",
            stack.ports.address("smtp"),
            "--dir",
            str(stack.layout.mail),
        ),
        ready=(f"tcp://{stack.ports.address('smtp')}",),
    )


def receiver(stack: Stack) -> Service:
    """The Alertmanager webhook receiver: levels, channels, incidents."""
    ports, layout = stack.ports, stack.layout
    config = layout.config("receiver")
    layout.data("receiver").mkdir(parents=True, exist_ok=True)
    config.write_text(
        render_receiver(
            ports=ports,
            token_file=layout.receiver_token_file,
            store=layout.data("receiver") / "receiver.db",
            outbox=layout.outbox,
            channel_outboxes={name: layout.channel_outbox(name) for name in STAND_INS},
            timing=stack.timing,
        ),
        encoding="utf-8",
    )
    return Service(
        name="receiver",
        argv=(
            *console_script("voicedrive-receiver"),
            "--config.file",
            str(config),
            "--web.listen-address",
            ports.address("receiver"),
        ),
        ready=(ports.url("receiver", "/-/ready"),),
    )


def alertmanager(stack: Stack) -> Service:
    """The real Alertmanager with the repo's alertmanager.yml, clustering off (loopback only)."""
    ports, layout = stack.ports, stack.layout
    config = layout.config("alertmanager")
    config.write_text(
        render_alertmanager(
            ports=ports, token_file=layout.receiver_token_file, timing=stack.timing
        ),
        encoding="utf-8",
    )
    return Service(
        name="alertmanager",
        argv=(
            ALERTMANAGER_BIN,
            f"--config.file={config}",
            f"--storage.path={layout.data('alertmanager')}",
            f"--web.listen-address={ports.address('alertmanager')}",
            # The links in its mails (the fallback's): the loopback address, not the host name.
            f"--web.external-url={ports.url('alertmanager')}",
            # Clustering would listen on 0.0.0.0:9094; one demo instance needs no peers.
            "--cluster.listen-address=",
        ),
        ready=(ports.url("alertmanager", "/-/ready"),),
    )


def prometheus(stack: Stack) -> Service:
    """The real Prometheus with the repo's prometheus.yml and generated rules."""
    ports, layout = stack.ports, stack.layout
    config = layout.config("prometheus")
    rule_files = None
    if stack.timing is not None:
        rule_files = [str(write_rules(stack.timing, layout.root / "rules"))]
    config.write_text(
        render_prometheus(ports=ports, interval=stack.probe_interval, rule_files=rule_files),
        encoding="utf-8",
    )
    return Service(
        name="prometheus",
        argv=(
            PROMETHEUS_BIN,
            f"--config.file={config}",
            f"--storage.tsdb.path={layout.data('prometheus')}",
            f"--web.listen-address={ports.address('prometheus')}",
        ),
        ready=(ports.url("prometheus", "/-/ready"),),
    )
