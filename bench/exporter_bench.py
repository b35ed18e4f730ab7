"""Exporter benchmark: this exporter vs prometheus-blackbox-exporter on the same loopback target.

Measures, in one run:
- CPU seconds (user + system) per 1,000 HTTP probes and RSS of each exporter process, both
  probing the same tiny JSON target (a separate process, so its CPU is not counted) at the same
  rate with an equivalent body check;
- ``/metrics`` with 50 API endpoints: the median of a full render of a fresh snapshot (no
  cache) and the median HTTP round trip of a scrape.

Usage: ``.venv/bin/python bench/exporter_bench.py [--seconds 15] [--endpoints 50]``
"""

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from aiohttp import web

from voicedrive_common.durations import format_duration
from voicedrive_common.throwaway_pg import free_port
from voicedrive_exporter.collector import Exposition
from voicedrive_exporter.probes.base import ProbeResult, sample
from voicedrive_exporter.snapshot import SnapshotStore

BODY = json.dumps({"status": "ok", "version": "bench"}).encode()


def run_target(port: int) -> None:
    """The loopback target: ``/health/<n>`` answers JSON, ``/stats`` counts hits by client."""
    hits: dict[str, int] = {}

    async def health(request: web.Request) -> web.Response:
        agent = request.headers.get("User-Agent", "")
        key = "blackbox" if "Blackbox" in agent else "voicedrive" if "voicedrive" in agent else ""
        hits[key] = hits.get(key, 0) + 1
        return web.Response(body=BODY, content_type="application/json")

    async def stats(request: web.Request) -> web.Response:
        del request
        return web.json_response(hits)

    app = web.Application()
    app.router.add_get("/health/{n}", health)
    app.router.add_get("/stats", stats)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def wait_http(url: str, seconds: float = 20.0) -> None:
    """Poll ``url`` until it answers (bounded)."""
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as resp:
                    if resp.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up within {seconds}s")


async def target_hits(base: str, who: str) -> int:
    """Requests the target has served to ``who``."""
    async with aiohttp.ClientSession() as session, session.get(f"{base}/stats") as resp:
        return int((await resp.json()).get(who, 0))


def cpu_seconds(proc: psutil.Process) -> float:
    """User + system CPU of the process so far."""
    t = proc.cpu_times()
    return float(t.user + t.system)


async def measure(
    name: str, proc: psutil.Process, base: str, seconds: float, driver: Any
) -> dict[str, float]:
    """Run ``driver`` for ``seconds`` after a warm-up; CPU per 1,000 probes and RSS."""
    stop = asyncio.Event()
    task = asyncio.create_task(driver(stop))
    await asyncio.sleep(2.0)  # warm-up: imports, first connections, caches
    cpu0, hits0 = cpu_seconds(proc), await target_hits(base, name)
    await asyncio.sleep(seconds)
    cpu1, hits1 = cpu_seconds(proc), await target_hits(base, name)
    rss = proc.memory_info().rss
    stop.set()
    await task
    probes = hits1 - hits0
    return {
        "probes": probes,
        "cpu_seconds": cpu1 - cpu0,
        "cpu_per_1000": (cpu1 - cpu0) / probes * 1000 if probes else float("nan"),
        "rss_mb": rss / 2**20,
    }


async def bench_voicedrive(
    target: str, endpoints: int, interval: float, seconds: float, tmp: Path
) -> tuple[dict[str, float], list[float]]:
    """This exporter probing ``endpoints`` URLs every ``interval``; scraped once a second."""
    port = free_port()
    lines = [
        "api:",
        f"  interval: {format_duration(interval)}",
        f"  timeout: {format_duration(interval * 0.8)}",
        "  endpoints:",
        *(f"    - {{url: '{target}/health/{i}', name: e{i}}}" for i in range(endpoints)),
        "host: {enabled: false}",
    ]
    config = tmp / "exporter.yml"
    config.write_text("\n".join(lines) + "\n")
    exe = str(Path(sys.executable).with_name("voicedrive-exporter"))
    popen = await asyncio.create_subprocess_exec(
        exe,
        "--config.file",
        str(config),
        "--web.listen-address",
        f"127.0.0.1:{port}",
        "--log.level",
        "error",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_http(f"{base}/-/healthy")
        proc = psutil.Process(popen.pid)

        async def scrape_every_second(stop: asyncio.Event) -> None:
            async with aiohttp.ClientSession() as session:
                while not stop.is_set():
                    async with session.get(f"{base}/metrics") as resp:
                        await resp.read()
                    await asyncio.sleep(1.0)

        result = await measure("voicedrive", proc, target, seconds, scrape_every_second)
        scrape_ms = []
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                started = time.perf_counter()
                async with session.get(f"{base}/metrics") as resp:
                    await resp.read()
                scrape_ms.append((time.perf_counter() - started) * 1000)
        return result, scrape_ms
    finally:
        popen.terminate()
        await asyncio.wait_for(popen.wait(), 10)


async def bench_blackbox(
    target: str, endpoints: int, interval: float, seconds: float, tmp: Path
) -> dict[str, float]:
    """blackbox_exporter probing the same URLs at the same rate (it probes per /probe request)."""
    port = free_port()
    config = tmp / "blackbox.yml"
    config.write_text(
        "modules:\n"
        "  http_ok:\n"
        "    prober: http\n"
        f"    timeout: {interval * 0.8}s\n"
        "    http:\n"
        "      preferred_ip_protocol: ip4\n"
        '      fail_if_body_not_matches_regexp: [\'"status": *"ok"\']\n'
    )
    popen = await asyncio.create_subprocess_exec(
        "prometheus-blackbox-exporter",
        f"--config.file={config}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=error",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_http(f"{base}/-/healthy")
        proc = psutil.Process(popen.pid)

        async def probe_like_prometheus(stop: asyncio.Event) -> None:
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=endpoints)
            ) as session:

                async def one(i: int) -> None:
                    params = {"module": "http_ok", "target": f"{target}/health/{i}"}
                    async with session.get(f"{base}/probe", params=params) as resp:
                        body = await resp.text()
                        assert "probe_success 1" in body, body

                while not stop.is_set():
                    started = time.monotonic()
                    await asyncio.gather(*(one(i) for i in range(endpoints)))
                    await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

        return await measure("blackbox", proc, target, seconds, probe_like_prometheus)
    finally:
        popen.terminate()
        await asyncio.wait_for(popen.wait(), 10)


def render_medians(endpoints: int, rounds: int = 300) -> tuple[float, float]:
    """In-process render of a 50-endpoint snapshot: (fresh render median ms, cached median ms)."""
    store = SnapshotStore()
    store.configure(["api", "database", "notifications", "backup", "host"])

    def api_result(i: int) -> ProbeResult:
        samples = []
        observations = []
        for n in range(endpoints):
            name = f"e{n}"
            samples += [
                sample("voicedrive_api_up", 1, endpoint=name),
                sample("voicedrive_api_probe_duration_seconds", 0.01 * i, endpoint=name),
                sample("voicedrive_api_http_status_code", 200, endpoint=name),
                sample("voicedrive_api_tls_cert_expiry_timestamp_seconds", 2e9, endpoint=name),
            ]
            observations.append(
                sample("voicedrive_api_request_duration_seconds", 0.3, endpoint=name)
            )
        return ProbeResult(True, tuple(samples), (), tuple(observations))

    exposition = Exposition(lambda: store.snapshot, version="bench")
    fresh, cached = [], []
    for i in range(rounds):
        store.record("api", api_result(i), time.time())
        started = time.perf_counter()
        exposition.render()
        fresh.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        exposition.render()
        cached.append((time.perf_counter() - started) * 1000)
    return statistics.median(fresh), statistics.median(cached)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; returns the figures."""
    tmp = Path(tempfile.mkdtemp(prefix="voicedrive-bench-"))
    target_port = free_port()
    target_proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve-target", str(target_port)
    )
    target = f"http://127.0.0.1:{target_port}"
    try:
        await wait_http(f"{target}/stats")
        ours, scrape_ms = await bench_voicedrive(
            target, args.endpoints, args.interval, args.seconds, tmp
        )
        theirs = await bench_blackbox(target, args.endpoints, args.interval, args.seconds, tmp)
    finally:
        target_proc.terminate()
        await asyncio.wait_for(target_proc.wait(), 10)
        shutil.rmtree(tmp, ignore_errors=True)
    fresh, cached = render_medians(args.endpoints)
    return {
        "voicedrive": ours,
        "blackbox": theirs,
        "cpu_ratio": ours["cpu_per_1000"] / theirs["cpu_per_1000"],
        "scrape_http_median_ms": statistics.median(scrape_ms),
        "render_fresh_median_ms": fresh,
        "render_cached_median_ms": cached,
    }


def main() -> None:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=15.0, help="measured seconds per exporter")
    p.add_argument("--endpoints", type=int, default=50)
    p.add_argument("--interval", type=float, default=0.5, help="seconds between probe rounds")
    p.add_argument("--serve-target", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_target is not None:
        run_target(args.serve_target)
        return
    figures = asyncio.run(run(args))
    ours, theirs = figures["voicedrive"], figures["blackbox"]
    print(f"cpu count: {os.cpu_count()}, endpoints: {args.endpoints}, interval: {args.interval}s")
    for name, f in (("voicedrive-exporter", ours), ("blackbox_exporter", theirs)):
        print(
            f"{name:20} probes={f['probes']:.0f} cpu={f['cpu_seconds']:.3f}s "
            f"cpu/1000 probes={f['cpu_per_1000']:.3f}s rss={f['rss_mb']:.1f} MB"
        )
    print(f"cpu ratio (voicedrive / blackbox): {figures['cpu_ratio']:.2f}")
    print(f"/metrics render median, fresh snapshot: {figures['render_fresh_median_ms']:.3f} ms")
    print(f"/metrics render median, cached:         {figures['render_cached_median_ms']:.4f} ms")
    print(f"/metrics HTTP scrape median:            {figures['scrape_http_median_ms']:.3f} ms")


if __name__ == "__main__":
    main()
