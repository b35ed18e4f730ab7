"""API probe: each endpoint must answer an accepted status and pass its JSON body check."""

import asyncio
import json
import logging
from typing import Any

from voicedrive_exporter.config import ApiSettings, BodyCheck, Endpoint
from voicedrive_exporter.probes.base import (
    ProbeDeps,
    ProbeResult,
    Sample,
    inner_deadline,
    merge,
    sample,
)
from voicedrive_exporter.probes.http import FetchFailure, fetch

log = logging.getLogger("voicedrive_exporter.probes.api")


async def probe(settings: ApiSettings, *, deps: ProbeDeps) -> ProbeResult:
    """Probe every endpoint concurrently, each within the probe's own deadline."""
    deadline = inner_deadline(settings.schedule.timeout)
    results = await asyncio.gather(*(_one(settings, e, deps, deadline) for e in settings.endpoints))
    return merge(results)


async def _one(
    settings: ApiSettings, endpoint: Endpoint, deps: ProbeDeps, deadline: float
) -> ProbeResult:
    started = deps.clock.monotonic()
    status: int | None = None
    expiry: float | None = None
    reason: str | None = None
    observations: tuple[Sample, ...] = ()
    try:
        async with asyncio.timeout(deadline):
            fetched = await fetch(
                deps.session,
                endpoint.url,
                method=endpoint.method,
                headers=dict(endpoint.headers),
                tls=settings.tls,
                max_redirects=settings.max_redirects,
                max_body_bytes=settings.max_body_bytes,
            )
        status, expiry = fetched.status, fetched.cert_expiry
        observations = (
            sample(
                "voicedrive_api_request_duration_seconds",
                deps.clock.monotonic() - started,
                endpoint=endpoint.name,
            ),
        )
        if not endpoint.accepts(fetched.status):
            reason = "status"
        elif endpoint.body_check is not None and not _body_ok(endpoint.body_check, fetched.body):
            reason = "body"
    except TimeoutError:
        reason = "timeout"
    except FetchFailure as exc:
        reason, status = exc.reason, exc.status
    except Exception as exc:  # one endpoint's surprise must not fail the others
        reason = "other"
        log.error(
            "api probe hit an unexpected error",
            extra={"endpoint": endpoint.name, "err": type(exc).__name__},
        )
    elapsed = deps.clock.monotonic() - started
    samples = [
        sample("voicedrive_api_up", 0 if reason else 1, endpoint=endpoint.name),
        sample("voicedrive_api_probe_duration_seconds", elapsed, endpoint=endpoint.name),
    ]
    if status is not None:
        samples.append(sample("voicedrive_api_http_status_code", status, endpoint=endpoint.name))
    if expiry is not None:
        samples.append(
            sample(
                "voicedrive_api_tls_cert_expiry_timestamp_seconds", expiry, endpoint=endpoint.name
            )
        )
    if reason:
        samples.append(
            sample("voicedrive_api_failure_info", 1, endpoint=endpoint.name, reason=reason)
        )
        extra: dict[str, object] = {"endpoint": endpoint.name, "reason": reason}
        if status is not None:
            extra["status"] = status
        log.warning("api probe failed", extra=extra)
    return ProbeResult(
        success=reason is None,
        samples=tuple(samples),
        reasons=(reason,) if reason else (),
        observations=observations,
    )


def _body_ok(check: BodyCheck, body: bytes) -> bool:
    try:
        value: Any = json.loads(body)
    except ValueError:
        return False
    for part in check.json_field.split("."):
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return bool(value == check.equals)


def failure(settings: ApiSettings, reason: str) -> ProbeResult:
    """Every endpoint down with ``reason`` (the run did not finish in time)."""
    return merge(
        [
            ProbeResult(
                success=False,
                samples=(
                    sample("voicedrive_api_up", 0, endpoint=e.name),
                    sample("voicedrive_api_failure_info", 1, endpoint=e.name, reason=reason),
                ),
                reasons=(reason,),
            )
            for e in settings.endpoints
        ]
    )
