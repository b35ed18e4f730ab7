"""The demo's loopback ports: the contract's defaults, a shifted block, or any free ports."""

import socket
from dataclasses import dataclass

from voicedrive_common.errors import ConfigError
from voicedrive_common.throwaway_pg import free_ports

HOST = "127.0.0.1"
# docs/contracts.md, "Demo / default loopback ports"; the order gives the --base-port offsets.
DEFAULT_PORTS: dict[str, int] = {
    "sim-api": 18080,
    "sim-admin": 18081,
    "db-proxy": 15432,
    "postgres": 15433,
    "exporter": 9917,
    "receiver": 9918,
    "prometheus": 19090,
    "alertmanager": 19093,
    "smtp": 10025,
}


@dataclass(frozen=True)
class Ports:
    """One port per service name."""

    by_name: dict[str, int]

    def __getitem__(self, name: str) -> int:
        return self.by_name[name]

    def address(self, name: str) -> str:
        """``127.0.0.1:PORT`` of ``name``."""
        return f"{HOST}:{self[name]}"

    def url(self, name: str, path: str = "") -> str:
        """``http://127.0.0.1:PORT<path>`` of ``name``."""
        return f"http://{self.address(name)}{path}"


def choose_ports(base: int | None, overrides: list[str]) -> Ports:
    """Defaults, or ``base + offset`` per service (``base`` 0: any free port), then overrides."""
    if base is None:
        ports = dict(DEFAULT_PORTS)
    elif base == 0:
        ports = dict(zip(DEFAULT_PORTS, free_ports(len(DEFAULT_PORTS)), strict=True))
    else:
        if not 1024 <= base <= 65535 - len(DEFAULT_PORTS):
            raise ConfigError("--base-port", f"must be 0 or between 1024 and 65526, got {base}")
        ports = {name: base + i for i, name in enumerate(DEFAULT_PORTS)}
    for item in overrides:
        name, sep, value = item.partition("=")
        if not sep or name not in DEFAULT_PORTS:
            raise ConfigError(
                "--port", f"expected NAME=PORT with NAME one of {', '.join(DEFAULT_PORTS)}"
            )
        if not value.isdigit() or not 1 <= int(value) <= 65535:
            raise ConfigError(f"--port {name}", f"expected a port number, got {value!r}")
        ports[name] = int(value)
    if len(set(ports.values())) != len(ports):
        raise ConfigError("--port", "two services were given the same port")
    return Ports(ports)


def busy_ports(ports: Ports, names: list[str]) -> list[str]:
    """Which of ``names`` have a port something else already listens on."""
    busy = []
    for name in names:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # The services set SO_REUSEADDR too, so a TIME_WAIT left by a last run is no clash.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((HOST, ports[name]))
            except OSError:
                busy.append(name)
    return busy
