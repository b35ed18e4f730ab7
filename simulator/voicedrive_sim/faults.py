"""The faults injected through the admin API: one board that every listener reads.

The admin handlers are the only writers. Readers (the API middleware, the database proxy, the
notification writer) look at the board on every request, connection or tick, so a change takes
effect immediately without any listener keeping its own copy.
"""

import asyncio
import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from voicedrive_common.errors import VoiceDriveError

ALL_ENDPOINTS = "*"
MAX_LATENCY_SECONDS = 300.0
MAX_ROWS_PER_SECOND = 10_000.0


class FaultError(VoiceDriveError):
    """A fault request is malformed; the message names the offending field."""


@dataclass(frozen=True)
class ApiFault:
    """What the API does to requests on one endpoint (or on every endpoint for ``*``)."""

    latency_seconds: float = 0.0
    status: int | None = None
    hang: bool = False
    corrupt: bool = False
    down: bool = False

    @property
    def is_clear(self) -> bool:
        """Whether this fault changes nothing."""
        return self == ApiFault()


_API_KEYS = {"endpoint", "latency_seconds", "status", "hang", "corrupt", "down"}


def parse_api_fault(body: object) -> tuple[str, ApiFault]:
    """The endpoint and fault of a ``PUT /admin/faults/api`` body."""
    data = _mapping(body, _API_KEYS)
    endpoint = data.get("endpoint", ALL_ENDPOINTS)
    if not isinstance(endpoint, str) or not (endpoint == ALL_ENDPOINTS or endpoint[:1] == "/"):
        raise FaultError("endpoint: expected '*' or a path starting with '/'")
    latency = _number(data, "latency_seconds", 0.0, 0.0, MAX_LATENCY_SECONDS)
    status = data.get("status")
    if status is not None and (
        isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599
    ):
        raise FaultError("status: expected an HTTP status code between 100 and 599")
    fault = ApiFault(
        latency_seconds=latency,
        status=status,
        hang=_flag(data, "hang"),
        corrupt=_flag(data, "corrupt"),
        down=_flag(data, "down"),
    )
    if fault.down and endpoint != ALL_ENDPOINTS:
        raise FaultError("down: closes the whole API listener, so it needs endpoint '*'")
    return endpoint, fault


def parse_db_fault(body: object) -> bool:
    """The ``down`` flag of a ``PUT /admin/faults/db`` body."""
    data = _mapping(body, {"down"})
    if "down" not in data:
        raise FaultError("down: is required (true or false)")
    return _flag(data, "down")


def parse_notification_fault(body: object) -> tuple[float | None, float | None]:
    """``(failure_ratio, rows_per_second)`` of a ``PUT /admin/faults/notifications`` body."""
    data = _mapping(body, {"failure_ratio", "rows_per_second"})
    if not data:
        raise FaultError("expected failure_ratio and/or rows_per_second")
    ratio = _number(data, "failure_ratio", None, 0.0, 1.0)
    rate = _number(data, "rows_per_second", None, 0.0, MAX_ROWS_PER_SECOND)
    return ratio, rate


class FaultBoard:
    """Current faults plus the notification settings they override."""

    def __init__(self, *, failure_ratio: float, rows_per_second: float) -> None:
        self._base_ratio = failure_ratio
        self._base_rate = rows_per_second
        self.failure_ratio = failure_ratio
        self.rows_per_second = rows_per_second
        self.api: dict[str, ApiFault] = {}
        self.db_down = False
        self._changed = asyncio.Event()

    def api_fault_for(self, path: str) -> ApiFault:
        """The fault for ``path``: its own one if set, else the ``*`` one, else none."""
        return self.api.get(path) or self.api.get(ALL_ENDPOINTS) or ApiFault()

    @property
    def api_down(self) -> bool:
        """Whether the API listener must be closed."""
        return self.api.get(ALL_ENDPOINTS, ApiFault()).down

    def set_api(self, endpoint: str, fault: ApiFault) -> None:
        """Replace the fault of ``endpoint`` (a clear fault removes it)."""
        if fault.is_clear:
            self.api.pop(endpoint, None)
        else:
            self.api[endpoint] = fault
        self._touch()

    def set_db_down(self, down: bool) -> None:
        """Take the database proxy down or bring it back."""
        self.db_down = down
        self._touch()

    def set_notifications(
        self, *, failure_ratio: float | None, rows_per_second: float | None
    ) -> None:
        """Override the share of failed rows and/or the write rate."""
        if failure_ratio is not None:
            self.failure_ratio = failure_ratio
        if rows_per_second is not None:
            self.rows_per_second = rows_per_second
        self._touch()

    def clear(self) -> None:
        """Lift every fault and restore the start-up notification settings."""
        self.api.clear()
        self.db_down = False
        self.failure_ratio = self._base_ratio
        self.rows_per_second = self._base_rate
        self._touch()

    async def wait_changed(self, *, within: float) -> None:
        """Return when the board changes or after ``within`` seconds."""
        try:
            await asyncio.wait_for(self._changed.wait(), within)
        except TimeoutError:
            return

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready view for ``GET /admin/faults``."""
        return {
            "api": {endpoint: asdict(fault) for endpoint, fault in sorted(self.api.items())},
            "db": {"down": self.db_down},
            "notifications": {
                "failure_ratio": self.failure_ratio,
                "rows_per_second": self.rows_per_second,
            },
        }

    def _touch(self) -> None:
        # Waking every waiter and starting a fresh event lets hung requests re-read the board.
        self._changed.set()
        self._changed = asyncio.Event()


def without_hang(fault: ApiFault) -> ApiFault:
    """The same fault with hanging switched off."""
    return replace(fault, hang=False)


def _mapping(body: object, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise FaultError("expected a JSON object")
    unknown = sorted(str(k) for k in body if k not in allowed)
    if unknown:
        raise FaultError(
            f"unknown field {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    return body


def _flag(data: dict[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise FaultError(f"{key}: expected true or false")
    return value


def _number(data: dict[str, Any], key: str, default: Any, lo: float, hi: float) -> Any:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FaultError(f"{key}: expected a number")
    if not lo <= value <= hi:
        raise FaultError(f"{key}: must be between {lo:g} and {hi:g}, got {value:g}")
    return float(value)
