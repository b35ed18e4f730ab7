"""The probe table: every probe module, under the name used for the ``probe`` label.

Each module offers ``probe(settings, *, deps)`` and ``failure(settings, reason)``; see base.py.
"""

from typing import Any

from voicedrive_exporter.config import Config
from voicedrive_exporter.probes import api, backup, database, host, notifications
from voicedrive_exporter.probes.base import ProbeDeps, ProbeKind, ProbeResult

PROBES: dict[str, ProbeKind] = {
    "api": ProbeKind("api", api.probe, api.failure),
    "notifications": ProbeKind("notifications", notifications.probe, notifications.failure),
    "database": ProbeKind("database", database.probe, database.failure),
    "backup": ProbeKind("backup", backup.probe, backup.failure),
    "host": ProbeKind("host", host.probe, host.failure),
}


def configured(config: Config) -> list[tuple[ProbeKind, Any]]:
    """(probe kind, its settings) for every section present in ``config``, in table order."""
    return [
        (kind, getattr(config, name))
        for name, kind in PROBES.items()
        if getattr(config, name) is not None
    ]


__all__ = ["PROBES", "ProbeDeps", "ProbeKind", "ProbeResult", "configured"]
