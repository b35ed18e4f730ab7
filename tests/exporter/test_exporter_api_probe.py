"""API probe against real loopback HTTP targets."""

import asyncio
import ssl
import time
import tracemalloc
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trustme
from aiohttp import web
from exporter_helpers import RawServe, Serve, never_answer

from voicedrive_common.throwaway_pg import free_port
from voicedrive_exporter.config import ApiSettings, parse_config
from voicedrive_exporter.probes import api
from voicedrive_exporter.probes.base import ProbeDeps, ProbeResult


def settings(yaml: str) -> ApiSettings:
    config = parse_config(yaml)
    assert config.api is not None
    return config.api


def values(result: ProbeResult, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {s.labels: s.value for s in result.samples if s.name == name}


def one(result: ProbeResult, name: str, endpoint: str = "/health") -> float | None:
    return values(result, name).get((("endpoint", endpoint),))


def status_app(status: int = 200, body: object = None) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        del request
        return web.json_response({"status": "ok"} if body is None else body, status=status)

    app = web.Application()
    app.router.add_get("/health", handler)
    app.router.add_get("/api/status", handler)
    return app


async def test_healthy_endpoint_is_up_with_status_and_duration(
    serve: Serve, deps: ProbeDeps
) -> None:
    base = await serve(status_app())
    result = await api.probe(settings(f"api: {{base_url: '{base}'}}"), deps=deps)
    assert result.success
    assert one(result, "voicedrive_api_up") == 1
    assert one(result, "voicedrive_api_up", "/api/status") == 1
    assert one(result, "voicedrive_api_http_status_code") == 200
    duration = one(result, "voicedrive_api_probe_duration_seconds")
    assert duration is not None
    assert 0 < duration < 1
    assert [o.name for o in result.observations] == ["voicedrive_api_request_duration_seconds"] * 2


async def test_status_outside_accepted_codes_is_down_with_reason_status(
    serve: Serve, deps: ProbeDeps
) -> None:
    base = await serve(status_app(status=503))
    result = await api.probe(settings(f"api: {{base_url: '{base}'}}"), deps=deps)
    assert not result.success
    assert one(result, "voicedrive_api_up") == 0
    assert one(result, "voicedrive_api_http_status_code") == 503
    assert (
        values(result, "voicedrive_api_failure_info")[
            (("endpoint", "/health"), ("reason", "status"))
        ]
        == 1
    )
    assert result.reasons == ("status", "status")


async def test_body_field_not_equal_is_down_with_reason_body(serve: Serve, deps: ProbeDeps) -> None:
    base = await serve(status_app(body={"status": "degraded"}))
    result = await api.probe(settings(f"api: {{base_url: '{base}'}}"), deps=deps)
    assert one(result, "voicedrive_api_up") == 0
    assert result.reasons == ("body", "body")


async def test_body_check_follows_a_dotted_path_and_compares_typed_values(
    serve: Serve, deps: ProbeDeps
) -> None:
    base = await serve(status_app(body={"db": {"healthy": True}}))
    yaml = (
        f"api: {{base_url: '{base}', endpoints: [{{path: /health, "
        "body_check: {json_field: db.healthy, equals: true}}]}"
    )
    assert (await api.probe(settings(yaml), deps=deps)).success


async def test_non_json_body_fails_the_body_check(serve: Serve, deps: ProbeDeps) -> None:
    async def handler(request: web.Request) -> web.Response:
        del request
        return web.Response(text="<html>ok</html>")

    app = web.Application()
    app.router.add_get("/health", handler)
    base = await serve(app)
    yaml = f"api: {{base_url: '{base}', endpoints: [{{path: /health}}]}}"
    assert (await api.probe(settings(yaml), deps=deps)).reasons == ("body",)


async def test_body_check_can_be_switched_off(serve: Serve, deps: ProbeDeps) -> None:
    base = await serve(status_app(body=["anything"]))
    yaml = f"api: {{base_url: '{base}', endpoints: [{{path: /health, body_check: false}}]}}"
    assert (await api.probe(settings(yaml), deps=deps)).success


async def test_target_that_never_answers_is_down_with_reason_timeout_within_the_timeout(
    raw_server: RawServe, deps: ProbeDeps
) -> None:
    port = await raw_server(never_answer)
    yaml = f"api: {{base_url: 'http://127.0.0.1:{port}', interval: 2s, timeout: 1s}}"
    started = time.monotonic()
    result = await api.probe(settings(yaml), deps=deps)
    elapsed = time.monotonic() - started
    assert result.reasons == ("timeout", "timeout")
    assert one(result, "voicedrive_api_up") == 0
    assert one(result, "voicedrive_api_http_status_code") is None
    assert 0.8 <= elapsed < 1.0


async def test_refused_connection_is_down_with_reason_refused(deps: ProbeDeps) -> None:
    yaml = f"api: {{base_url: 'http://127.0.0.1:{free_port()}', endpoints: [{{path: /health}}]}}"
    assert (await api.probe(settings(yaml), deps=deps)).reasons == ("refused",)


async def test_unresolvable_host_is_down_with_reason_dns(deps: ProbeDeps) -> None:
    yaml = "api: {endpoints: [{url: 'http://no-such-host.invalid/health'}]}"
    assert (await api.probe(settings(yaml), deps=deps)).reasons == ("dns",)


def endless_app(chunk: bytes, pause: float) -> web.Application:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for _ in range(1_000_000):  # bounded: far beyond any cap or timeout used here
            await resp.write(chunk)
            await asyncio.sleep(pause)
        return resp

    app = web.Application()
    app.router.add_get("/health", handler)
    return app


async def test_endless_body_stops_at_the_cap_with_memory_flat(
    serve: Serve, deps: ProbeDeps
) -> None:
    base = await serve(endless_app(b"x" * 65536, 0))
    cap = 512 * 1024
    yaml = (
        f"api: {{base_url: '{base}', max_body_bytes: {cap}, timeout: 3s, interval: 5s, "
        "endpoints: [{path: /health}]}"
    )
    tracemalloc.start()
    try:
        started = time.monotonic()
        result = await api.probe(settings(yaml), deps=deps)
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.reasons == ("body_too_large",)
    assert one(result, "voicedrive_api_http_status_code") == 200
    assert elapsed < 2.0
    assert peak < 4 * cap


async def test_slow_endless_body_under_the_cap_ends_at_the_timeout(
    serve: Serve, deps: ProbeDeps
) -> None:
    base = await serve(endless_app(b"{", 0.01))
    yaml = f"api: {{base_url: '{base}', timeout: 1s, interval: 2s, endpoints: [{{path: /health}}]}}"
    started = time.monotonic()
    result = await api.probe(settings(yaml), deps=deps)
    assert result.reasons == ("timeout",)
    assert time.monotonic() - started < 1.0


def redirect_app(hops: int) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        if n == 0:
            return web.json_response({"status": "ok"})
        raise web.HTTPFound(f"/r/{n - 1}")

    app = web.Application()
    app.router.add_get("/r/{n}", handler)

    async def start(request: web.Request) -> web.Response:
        del request
        raise web.HTTPFound(f"/r/{hops - 1}")

    app.router.add_get("/health", start)
    return app


@pytest.mark.parametrize(("hops", "max_redirects", "reasons"), [(2, 3, ()), (5, 3, ("redirects",))])
async def test_redirects_are_followed_up_to_the_limit(
    serve: Serve, deps: ProbeDeps, hops: int, max_redirects: int, reasons: tuple[str, ...]
) -> None:
    base = await serve(redirect_app(hops))
    yaml = (
        f"api: {{base_url: '{base}', max_redirects: {max_redirects}, "
        "endpoints: [{path: /health}]}"
    )
    assert (await api.probe(settings(yaml), deps=deps)).reasons == reasons


async def test_zero_max_redirects_makes_a_redirect_a_failure(serve: Serve, deps: ProbeDeps) -> None:
    base = await serve(redirect_app(1))
    yaml = f"api: {{base_url: '{base}', max_redirects: 0, endpoints: [{{path: /health}}]}}"
    assert (await api.probe(settings(yaml), deps=deps)).reasons == ("redirects",)


@pytest.fixture
async def tls_target(tmp_path: Path) -> AsyncIterator[tuple[str, Path, datetime]]:
    ca = trustme.CA()
    not_after = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
    cert = ca.issue_cert("127.0.0.1", not_after=not_after)
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    runner = web.AppRunner(status_app(), shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx).start()
    yield f"https://127.0.0.1:{runner.addresses[0][1]}", tmp_path / "ca.pem", not_after
    await runner.cleanup()


async def test_tls_is_verified_by_default(
    tls_target: tuple[str, Path, datetime], deps: ProbeDeps
) -> None:
    base, _, _ = tls_target
    yaml = f"api: {{base_url: '{base}', endpoints: [{{path: /health}}]}}"
    result = await api.probe(settings(yaml), deps=deps)
    assert result.reasons == ("tls",)
    assert one(result, "voicedrive_api_tls_cert_expiry_timestamp_seconds") is None


async def test_verified_certificate_exports_its_expiry(
    tls_target: tuple[str, Path, datetime], deps: ProbeDeps
) -> None:
    base, ca_file, not_after = tls_target
    yaml = (
        f"api: {{base_url: '{base}', tls: {{ca_file: '{ca_file}'}}, "
        "endpoints: [{path: /health}]}"
    )
    result = await api.probe(settings(yaml), deps=deps)
    assert result.success
    expiry = one(result, "voicedrive_api_tls_cert_expiry_timestamp_seconds")
    assert expiry == not_after.timestamp()


async def test_insecure_skip_verify_accepts_an_unknown_ca(
    tls_target: tuple[str, Path, datetime], deps: ProbeDeps
) -> None:
    base, _, _ = tls_target
    yaml = (
        f"api: {{base_url: '{base}', tls: {{insecure_skip_verify: true}}, "
        "endpoints: [{path: /health}]}"
    )
    assert (await api.probe(settings(yaml), deps=deps)).success


def test_failure_marks_every_endpoint_down() -> None:
    result = api.failure(settings("api: {base_url: 'http://x'}"), "timeout")
    assert not result.success
    assert one(result, "voicedrive_api_up") == 0
    assert one(result, "voicedrive_api_up", "/api/status") == 0
    assert one(result, "voicedrive_api_probe_duration_seconds") is None
