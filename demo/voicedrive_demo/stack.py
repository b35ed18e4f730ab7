"""The demo's stack: its working directory and the list of services the launcher starts.

To add a part, append one ``Service`` in ``build_services`` (and its port in
``ports.DEFAULT_PORTS``); the supervisor does the rest.
"""

import importlib.util
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from voicedrive_demo.exporter_config import render_exporter_config
from voicedrive_demo.ports import Ports
from voicedrive_demo.services import Service, console_script

DATABASE = "voicedrive"
# The demo probes every few seconds so that an injected fault shows within moments;
# production keeps the protocol's 30 s (P4).
PROBE_INTERVAL = "5s"


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
    def db_password_file(self) -> Path:
        """The database password the exporter reads (mode 0600)."""
        return self.root / "db-password"

    @property
    def backups(self) -> Path:
        """Where the fake backup lives, for the backup freshness probe."""
        return self.root / "backups"

    @property
    def exporter_config(self) -> Path:
        """The exporter config written from the embedded defaults."""
        return self.root / "exporter.yml"

    def prepare(self, *, db_password: str) -> None:
        """Create the directory and write this run's token, password and fake backup."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self.backups.mkdir(exist_ok=True)
        _write_private(self.token_file, secrets.token_urlsafe(24) + "\n")
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


def exporter_available() -> bool:
    """Whether the exporter package is installed with its entry point."""
    try:
        return importlib.util.find_spec("voicedrive_exporter.main") is not None
    except ModuleNotFoundError:
        return False


def build_services(
    *, ports: Ports, layout: Layout, db_user: str, db_dsn_direct: str, with_exporter: bool
) -> list[Service]:
    """Every service of the demo, in start order."""
    services = [
        Service(
            name="simulator",
            argv=(
                *console_script("voicedrive-sim", "voicedrive_sim"),
                "--web.listen-address",
                ports.address("sim-api"),
                "--admin.listen-address",
                ports.address("sim-admin"),
                "--admin.token-file",
                str(layout.token_file),
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
            env={"VOICEDRIVE_SIM_DB_DSN": db_dsn_direct},
            ready=(ports.url("sim-api", "/health"), f"tcp://{ports.address('db-proxy')}"),
        )
    ]
    if with_exporter:
        layout.exporter_config.write_text(
            render_exporter_config(
                ports=ports,
                database=DATABASE,
                db_user=db_user,
                password_file=layout.db_password_file,
                backup_glob=str(layout.backups / "*.dump"),
                interval=PROBE_INTERVAL,
            ),
            encoding="utf-8",
        )
        services.append(
            Service(
                name="exporter",
                argv=(
                    *console_script("voicedrive-exporter"),
                    "--config.file",
                    str(layout.exporter_config),
                    "--web.listen-address",
                    ports.address("exporter"),
                ),
                ready=(ports.url("exporter", "/-/ready"),),
            )
        )
    return services
