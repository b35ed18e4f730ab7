"""A throwaway PostgreSQL cluster on loopback, for the demo and the tests.

initdb refuses to run as root (CI runs as root), so when we are root the cluster is owned and
run by an unprivileged account (``postgres`` when the Debian package created it, else ``nobody``).
"""

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from voicedrive_common.errors import VoiceDriveError


class PostgresUnavailable(VoiceDriveError):
    """PostgreSQL's server binaries are missing or the cluster did not start."""


def find_pg_bin(name: str) -> str:
    """Path of a PostgreSQL server binary (Debian keeps them off PATH)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    if candidates:
        return candidates[0]
    raise PostgresUnavailable(
        f"{name} not found: install PostgreSQL (sudo apt-get install -y postgresql)"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports that were free a moment ago on ``host``.

    All are bound at once: ports taken one after the other can repeat, as the kernel may hand
    out a port again as soon as its socket is closed.
    """
    with contextlib.ExitStack() as stack:
        socks = [
            stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            for _ in range(count)
        ]
        for sock in socks:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def _run_as() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PostgresUnavailable("running as root and no unprivileged user (postgres, nobody) exists")


class ThrowawayPostgres:
    """Start with ``start()``, stop with ``stop()``; ``dsn`` connects as the superuser over TCP."""

    def __init__(
        self, *, base_dir: str | None = None, port: int | None = None, user: str = "voicedrive"
    ) -> None:
        self.base = Path(base_dir or tempfile.mkdtemp(prefix="voicedrive-pg-"))
        self.port = port or free_port()
        self.user = user
        self.password = secrets.token_urlsafe(18)
        self.host = "127.0.0.1"
        self._proc: subprocess.Popen[bytes] | None = None
        self._account = _run_as()

    @property
    def socket_dir(self) -> Path:
        """Directory of the Unix socket (trust auth, for admin commands)."""
        return self.base / "sock"

    @property
    def dsn(self) -> str:
        """Superuser DSN over TCP with password auth."""
        return self.dsn_for(self.user, self.password)

    def dsn_for(self, user: str, password: str, database: str = "postgres") -> str:
        """A DSN with the password percent-encoded, so any character works."""
        auth = f"{quote(user, safe='')}:{quote(password, safe='')}"
        return f"postgresql://{auth}@{self.host}:{self.port}/{database}"

    def start(self, timeout: float = 60.0) -> "ThrowawayPostgres":
        """initdb (once) and start the server; returns when it accepts connections."""
        data = self.base / "data"
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        log = self.base / "postgres.log"
        if not data.exists():
            pwfile = self.base / "pwfile"
            pwfile.write_text(self.password + "\n")
            self._chown(self.base)
            self._chown(pwfile)
            self._chown(self.socket_dir)
            self._run(
                [
                    find_pg_bin("initdb"),
                    "-D",
                    str(data),
                    "-U",
                    self.user,
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    f"--pwfile={pwfile}",
                ],
                timeout=timeout,
            )
            pwfile.unlink()
        with open(log, "ab") as out:
            self._proc = subprocess.Popen(
                [
                    find_pg_bin("postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.socket_dir),
                    "-c",
                    f"listen_addresses={self.host}",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=200",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                **self._popen_user(),
            )
        deadline = time.monotonic() + timeout
        isready = find_pg_bin("pg_isready")
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise PostgresUnavailable(
                    f"postgres exited with {self._proc.returncode}; see {log}"
                )
            ok = subprocess.run(
                [isready, "-q", "-h", self.host, "-p", str(self.port)], check=False, timeout=10
            )
            if ok.returncode == 0:
                return self
            time.sleep(0.1)
        self.stop()
        raise PostgresUnavailable(
            f"postgres did not accept connections within {timeout:g}s; see {log}"
        )

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over the Unix socket; returns stdout."""
        result = subprocess.run(
            [
                find_pg_bin("psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                database,
                "-At",
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
            **self._popen_user(),
        )
        if result.returncode != 0:
            raise PostgresUnavailable(f"psql failed: {result.stderr.strip()}")
        return str(result.stdout)

    def create_role(self, name: str, password: str, *, superuser: bool = False) -> str:
        """Create a login role and return its TCP DSN (the password may hold any character)."""
        quoted = password.replace("'", "''")
        ident = '"' + name.replace('"', '""') + '"'
        self.psql(
            f"CREATE ROLE {ident} LOGIN {'SUPERUSER' if superuser else ''} PASSWORD '{quoted}'"
        )
        return self.dsn_for(name, password)

    def create_database(self, name: str) -> str:
        """Create a database and return the superuser DSN for it."""
        self.psql(f'CREATE DATABASE "{name}"')
        return self.dsn_for(self.user, self.password, name)

    def stop(self, timeout: float = 15.0) -> None:
        """Fast shutdown; kill when it does not stop in time."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(2)  # SIGINT: fast shutdown, disconnects clients
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def cleanup(self) -> None:
        """Stop and delete the cluster's files."""
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def _chown(self, path: Path) -> None:
        if self._account is not None:
            os.chown(path, self._account.pw_uid, self._account.pw_gid)

    def _popen_user(self) -> dict[str, Any]:
        if self._account is None:
            return {}
        return {"user": self._account.pw_uid, "group": self._account.pw_gid, "extra_groups": []}

    def _run(self, cmd: list[str], timeout: float) -> None:
        result = subprocess.run(
            cmd, capture_output=True, text=True, check=False, timeout=timeout, **self._popen_user()
        )
        if result.returncode != 0:
            raise PostgresUnavailable(
                f"{Path(cmd[0]).name} failed: {result.stderr.strip()[-2000:]}"
            )
