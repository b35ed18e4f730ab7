"""The exposition of a snapshot, compared as exact text with the clock pinned."""

import re
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from voicedrive_exporter.collector import Exposition, SnapshotCollector
from voicedrive_exporter.probes.base import ProbeResult, sample
from voicedrive_exporter.snapshot import SnapshotStore

GOLDEN = Path(__file__).parent / "golden" / "exposition.txt"
FINISHED = 1756684800.0  # 2025-09-01T00:00:00Z, the FakeClock's start


def populated_store() -> SnapshotStore:
    store = SnapshotStore()
    store.configure(["api", "database", "backup"])
    store.record(
        "api",
        ProbeResult(
            success=False,
            samples=(
                sample("voicedrive_api_up", 1, endpoint="/health"),
                sample("voicedrive_api_probe_duration_seconds", 0.25, endpoint="/health"),
                sample("voicedrive_api_up", 0, endpoint="/api/status"),
                sample("voicedrive_api_failure_info", 1, endpoint="/api/status", reason="status"),
            ),
            reasons=("status",),
            observations=(
                sample("voicedrive_api_request_duration_seconds", 0.25, endpoint="/health"),
                sample("voicedrive_api_request_duration_seconds", 0.52, endpoint="/health"),
            ),
        ),
        FINISHED,
    )
    store.record(
        "database",
        ProbeResult(success=True, samples=(sample("voicedrive_db_up", 1, database="main"),)),
        FINISHED,
    )
    store.skip("database")
    return store


def test_snapshot_renders_as_the_golden_exposition() -> None:
    store = populated_store()
    text = Exposition(lambda: store.snapshot, version="1.2.3").render().decode()
    assert text == GOLDEN.read_text()


def test_probe_without_a_finished_run_has_no_success_series_yet() -> None:
    store = populated_store()
    text = Exposition(lambda: store.snapshot, version="1.2.3").render().decode()
    assert 'voicedrive_probe_success{probe="backup"}' not in text
    assert 'voicedrive_probe_skipped_total{probe="backup"} 0.0' in text


def test_render_is_cached_until_the_snapshot_changes() -> None:
    store = populated_store()
    exposition = Exposition(lambda: store.snapshot, version="1.2.3")
    first = exposition.render()
    assert exposition.render() is first
    store.skip("api")
    assert exposition.render() is not first
    assert b'voicedrive_probe_skipped_total{probe="api"} 1.0' in exposition.render()


def test_no_sample_carries_a_timestamp() -> None:
    store = populated_store()
    text = Exposition(lambda: store.snapshot, version="1.2.3").render().decode()
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert samples
    assert [s for s in samples if not re.fullmatch(r"[a-z_]+(\{.*\})? \S+", s)] == []


def reference_text(store: SnapshotStore) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(lambda: store.snapshot, version="1.2.3"))
    return generate_latest(registry).decode()


def test_fast_render_matches_prometheus_client_byte_for_byte() -> None:
    store = populated_store()
    store.record(
        "backup",
        ProbeResult(
            success=True,
            samples=(
                sample("voicedrive_backup_age_seconds", 1234567.891),
                sample("voicedrive_backup_size_bytes", 3.5e12),
                sample("voicedrive_backup_files", float("inf")),
            ),
        ),
        FINISHED + 0.125,
    )
    store.record(
        "api",
        ProbeResult(
            success=False,
            samples=(sample("voicedrive_api_up", 0, endpoint='we"ird\\na\nme'),),
            reasons=("timeout",),
            observations=(
                sample("voicedrive_api_request_duration_seconds", 11, endpoint='we"ird\\na\nme'),
            ),
        ),
        FINISHED,
    )
    fast = Exposition(lambda: store.snapshot, version="1.2.3").render().decode()
    assert fast == reference_text(store)
