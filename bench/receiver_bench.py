"""Receiver benchmark: webhook ingest vs a bare aiohttp handler, ack latency, POST-to-Slack.

    .venv/bin/python bench/receiver_bench.py [--rounds 5] [--slice 2] [--concurrency 32,128]
                                             [--seconds 5] [--rate 200]
                                             [--no-postgres] [--write bench/RESULTS.md]

Every server is a separate process on loopback, measured in the same run by the same client:
- ceiling: a bare aiohttp app answering 200 to POST /webhook (reads the body, nothing else),
  measured first, and again in a slice right before each throughput slice of a receiver,
  which is compared with that slice;
- the receiver with its SQLite store (WAL, synchronous=FULL) and with PostgreSQL (a throwaway
  cluster, fsync off as in the tests), fanning each payload out to a fake Slack webhook.
Measures: closed-loop throughput at each ``--concurrency`` level (Alertmanager flushes each
aggregation group on its own, so a storm's concurrency grows with the groups flushing at once;
each server's best rate, at its own saturation, is compared too); open-loop acknowledgement
latency at ``--rate`` payloads/s (p50/p99); end-to-end median from the POST to the fake Slack
receiving the message (sequential posts, so queueing does not blur it).
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from voicedrive_common.throwaway_pg import ThrowawayPostgres, free_port

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"  # noqa: S105 - a throwaway token for loopback servers
BEGIN = "<!-- BEGIN receiver-bench -->"
END = "<!-- END receiver-bench -->"

CEILING_APP = """
import sys
from aiohttp import web

async def handle(request):
    await request.read()
    return web.json_response({"status": "ok"})

app = web.Application()
app.router.add_post("/webhook", handle)
app.router.add_get("/-/ready", lambda r: web.Response(text="OK"))
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def receiver_config(store: str, slack_url: str, scheduler_interval: str | None = None) -> str:
    """Level 1 -> one Slack message per payload."""
    lifecycle = (
        f"lifecycle:\n  scheduler: {{interval: {scheduler_interval}}}\n"
        if scheduler_interval
        else ""
    )
    return (
        lifecycle
        + f"""
server:
  auth: {{bearer_token: {TOKEN}}}
store:
  {store}
contacts:
  room: {{}}
channels:
  slack: {{type: slack, webhook_url: "{slack_url}"}}
fanout:
  targets:
    - {{level: 1, channel: slack, to: [room]}}
outbox:
  concurrency: 8
  poll_interval: 1s
"""
    )


GROUPS = 20


def body(n: int, run: str, *, level: int = 1) -> bytes:
    """A distinct Level 1 notification: a new alert joins one of ``GROUPS`` groups.

    Every payload is a new notification (a real insert and a real Slack message) while the
    number of incidents stays that of a bad day, not one per payload. Another ``level``: a
    group of its own.
    """
    marker = f"bench-{run}-{n}"
    group = f"bench-{run}-group-{n % GROUPS}" if level == 1 else f"bench-{run}-urgent-{n}"
    alert = {
        "status": "firing",
        "labels": {"alertname": "Bench", "level": str(level), "system": "voicedrive", "n": marker},
        "annotations": {"summary": marker},
        "startsAt": "2025-09-01T09:00:00.000000001+09:00",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": f"{n:016x}",
    }
    return json.dumps(
        {
            "version": "4",
            "groupKey": f'{{}}:{{group="{group}"}}',
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "bench",
            "groupLabels": {"group": group},
            "commonLabels": alert["labels"],
            "commonAnnotations": alert["annotations"],
            "externalURL": "http://alertmanager:9093",
            "alerts": [alert],
        }
    ).encode()


class FakeSlack:
    """An incoming-webhook stand-in recording when each marker arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.waiters: dict[str, asyncio.Future[float]] = {}

    async def handle(self, request: web.Request) -> web.Response:
        now = time.perf_counter()
        text = await request.text()
        start = text.find("bench-")
        if start >= 0:
            end = start
            while end < len(text) and (text[end].isalnum() or text[end] == "-"):
                end += 1
            marker = text[start:end]
            self.arrived.setdefault(marker, now)
            waiter = self.waiters.pop(marker, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(now)
        return web.Response(text="ok")


@asynccontextmanager
async def fake_slack() -> AsyncIterator[tuple[FakeSlack, str]]:
    """The fake Slack on 127.0.0.1, port 0."""
    slack = FakeSlack()
    app = web.Application()
    app.router.add_post("/services/T/B/X", slack.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield slack, f"http://127.0.0.1:{port}/services/T/B/X"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def server(
    cmd: list[str], port: int, log: Path, env: dict[str, str]
) -> AsyncIterator[tuple[str, int]]:
    """Start a server process; yield its base URL and pid once /-/ready answers."""
    out = open(log, "ab")  # noqa: ASYNC230, SIM115 - a log file for the child, closed below
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=out, stderr=asyncio.subprocess.STDOUT, cwd=ROOT, env={**os.environ, **env}
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(400):
                if proc.returncode is not None:
                    raise SystemExit(f"{cmd[0]} exited; see {log}")
                with suppress(aiohttp.ClientError):
                    async with session.get(f"{url}/-/ready") as resp:
                        if resp.status == 200:
                            break
                await asyncio.sleep(0.05)
            else:
                raise SystemExit(f"server not ready; see {log}")
        yield url, proc.pid
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout=10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        out.close()


HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def throughput(url: str, *, seconds: float, concurrency: int) -> tuple[float, int]:
    """Closed loop with ``concurrency`` clients: (payloads acknowledged per second, count)."""
    run = uuid.uuid4().hex[:8]
    counter = iter(range(10**9))
    done = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                async with session.post(
                    f"{url}/webhook", data=body(next(counter), run), headers=HEADERS
                ) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise SystemExit(f"unexpected {resp.status} from {url}")
                done += 1

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return done / elapsed, done


async def ack_latency(url: str, *, seconds: float, rate: float) -> tuple[float, float, int]:
    """Open loop at ``rate``/s: (p50 ms, p99 ms, requests)."""
    run = uuid.uuid4().hex[:8]
    total = int(seconds * rate)
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(n: int) -> None:
            start = time.perf_counter()
            async with session.post(f"{url}/webhook", data=body(n, run), headers=HEADERS) as resp:
                await resp.read()
                if resp.status != 200:
                    raise SystemExit(f"unexpected {resp.status} from {url}")
            latencies.append(time.perf_counter() - start)

        tasks = []
        begin = time.perf_counter()
        for n in range(total):
            target = begin + n / rate
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return statistics.median(latencies) * 1000, p99 * 1000, total


async def post_to_slack(url: str, slack: FakeSlack, *, count: int) -> float:
    """Median ms from starting the POST to the fake Slack receiving that payload's message."""
    run = uuid.uuid4().hex[:8]
    loop = asyncio.get_running_loop()
    samples = []
    async with aiohttp.ClientSession() as session:
        for n in range(count):
            marker = f"bench-{run}-{n}"
            waiter: asyncio.Future[float] = loop.create_future()
            slack.waiters[marker] = waiter
            start = time.perf_counter()
            async with session.post(f"{url}/webhook", data=body(n, run), headers=HEADERS) as resp:
                await resp.read()
            arrived = await asyncio.wait_for(waiter, timeout=10)
            samples.append((arrived - start) * 1000)
            await asyncio.sleep(0.02)
    return statistics.median(samples)


async def urgent_in_flood(url: str, slack: FakeSlack, *, rounds: int, concurrency: int) -> float:
    """Median ms from a Level 4 POST to its Slack message, sent 2 s into a closed-loop flood
    of Level 1 notifications at ``concurrency`` (a storm whose backlog it must not wait for)."""
    run = uuid.uuid4().hex[:8]
    loop = asyncio.get_running_loop()
    samples = []
    async with aiohttp.ClientSession() as session:
        for n in range(rounds):
            flood = asyncio.create_task(throughput(url, seconds=5, concurrency=concurrency))
            await asyncio.sleep(2)
            waiter: asyncio.Future[float] = loop.create_future()
            slack.waiters[f"bench-{run}-{n}"] = waiter
            start = time.perf_counter()
            async with session.post(
                f"{url}/webhook", data=body(n, run, level=4), headers=HEADERS
            ) as resp:
                await resp.read()
            arrived = await asyncio.wait_for(waiter, timeout=120)
            samples.append((arrived - start) * 1000)
            await flood
            await asyncio.sleep(1.2)
            await drained(url)
    return statistics.median(samples)


QUEUES = ("voicedrive_receiver_ingest_backlog", "voicedrive_receiver_outbox_depth{")


async def drained(url: str, *, seconds: float = 300.0) -> None:
    """Wait until the journal and the outbox are empty, so one phase does not load the next.

    Both gauges are refreshed about every second: callers wait that long after a phase first.
    """
    async with aiohttp.ClientSession() as session, asyncio.timeout(seconds):
        while True:
            async with session.get(f"{url}/metrics") as resp:
                text = await resp.text()
            depth = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith(QUEUES)
            )
            if "voicedrive_receiver_outbox_depth" not in text or depth == 0:
                return
            await asyncio.sleep(0.25)


@dataclass
class Rounds:
    """Throughput slices of one server per concurrency, each after a ceiling slice at the same."""

    rates: dict[int, list[float]]
    ceilings: dict[int, list[float]]
    cpu_ms: float
    drain: float | None
    sustained: float | None

    def shares(self, concurrency: int) -> list[float]:
        """Each slice's rate over the ceiling's slice right before it."""
        pairs = zip(self.rates[concurrency], self.ceilings[concurrency], strict=True)
        return [rate / ceiling for rate, ceiling in pairs]

    def saturated(self) -> list[float]:
        """Per round: this server's best rate over the ceiling's best rate (any concurrency)."""
        rounds = len(next(iter(self.rates.values())))
        return [
            max(rates[i] for rates in self.rates.values())
            / max(ceilings[i] for ceilings in self.ceilings.values())
            for i in range(rounds)
        ]

    def best(self) -> float:
        """The highest median slice rate over the concurrencies."""
        return max(statistics.median(rates) for rates in self.rates.values())


@dataclass
class Row:
    """One server's figures."""

    name: str
    rounds: Rounds
    p50: float
    p99: float
    slack_median: float | None
    urgent_median: float | None


async def paired_throughput(
    target: tuple[str, int],
    ceiling_url: str | None,
    args: argparse.Namespace,
    *,
    processes: bool,
) -> Rounds:
    """``args.rounds`` rounds of one ``args.slice`` s slice per concurrency, after the ceiling's.

    The machine's speed drifts by up to 2x within minutes, so each slice is compared with the
    ceiling's slice at the same concurrency seconds before it, and medians of those ratios are
    the figures. A receiver is drained after each slice: its processing must not run during the
    next ceiling slice.
    """
    url, pid = target
    rates: dict[int, list[float]] = {c: [] for c in args.concurrency}
    ceilings: dict[int, list[float]] = {c: [] for c in args.concurrency}
    cpu = accepted = busy = drain_total = 0.0
    for _ in range(args.rounds):
        for concurrency in args.concurrency:
            if ceiling_url is not None:
                ceilings[concurrency].append(
                    (await throughput(ceiling_url, seconds=args.slice, concurrency=concurrency))[0]
                )
            before = cpu_seconds(pid)
            start = time.perf_counter()
            rate, done = await throughput(url, seconds=args.slice, concurrency=concurrency)
            burst_end = time.perf_counter()
            rates[concurrency].append(rate)
            accepted += done
            busy += burst_end - start
            if processes:
                # Processing and fan-out of the slice's payloads are part of their cost.
                await asyncio.sleep(1.2)
                await drained(url)
                # The gauges lag up to a refresh (1 s): the drain is counted up to when they
                # showed it, an overestimate of at most that.
                drain_total += time.perf_counter() - burst_end
            cpu += cpu_seconds(pid) - before
    slices = args.rounds * len(args.concurrency)
    return Rounds(
        rates=rates,
        ceilings=ceilings if ceiling_url is not None else rates,
        cpu_ms=cpu * 1000 / max(1.0, accepted),
        drain=drain_total / slices if processes else None,
        sustained=accepted / (busy + drain_total) if processes else None,
    )


async def measure(
    name: str,
    target: tuple[str, int],
    args: argparse.Namespace,
    slack: FakeSlack | None,
    ceiling_url: str | None = None,
) -> Row:
    """All figures for one server."""
    url, _ = target
    rounds = await paired_throughput(target, ceiling_url, args, processes=slack is not None)
    await asyncio.sleep(1.2)
    await drained(url)
    p50, p99, _ = await ack_latency(url, seconds=args.seconds, rate=args.rate)
    await drained(url)
    slack_ms = await post_to_slack(url, slack, count=args.slack_samples) if slack else None
    urgent_ms = (
        await urgent_in_flood(url, slack, rounds=3, concurrency=max(args.concurrency))
        if slack
        else None
    )
    shares = " ".join(f"c={c}: {statistics.median(rounds.shares(c)):.0%}" for c in args.concurrency)
    print(
        f"{name:<24} {rounds.cpu_ms:5.2f} CPU ms/payload {rounds.best():8.0f} req/s  "
        f"share {shares}, saturated {statistics.median(rounds.saturated()):.0%}  "
        f"ack p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"
        + (f"  POST->Slack median {slack_ms:6.2f} ms" if slack_ms is not None else "")
        + (f"  Level 4 in a flood {urgent_ms:6.0f} ms" if urgent_ms is not None else ""),
        flush=True,
    )
    return Row(name, rounds, p50, p99, slack_ms, urgent_ms)


def receiver_cmd(config: Path, port: int) -> list[str]:
    """The receiver command line."""
    return [
        sys.executable,
        "-m",
        "voicedrive_receiver.main",
        "--config.file",
        str(config),
        "--web.listen-address",
        f"127.0.0.1:{port}",
        "--log.level",
        "warn",
    ]


async def run(args: argparse.Namespace) -> list[Row]:
    """Ceiling, SQLite and (optionally) PostgreSQL, in this order, in one run."""
    work = Path(tempfile.mkdtemp(prefix="receiver-bench-"))
    rows = []
    port = free_port()
    async with (
        fake_slack() as (slack, slack_url),
        server(
            [sys.executable, "-c", CEILING_APP, str(port)], port, work / "ceiling.log", {}
        ) as ceiling,
    ):
        rows.append(await measure("bare aiohttp (ceiling)", ceiling, args, None))

        async def beside_ceiling(name: str, target: tuple[str, int]) -> Row:
            return await measure(name, target, args, slack, ceiling_url=ceiling[0])

        config = work / "sqlite.yml"
        config.write_text(receiver_config(f"sqlite: {{path: {work / 'receiver.db'}}}", slack_url))
        port = free_port()
        async with server(receiver_cmd(config, port), port, work / "sqlite.log", {}) as target:
            rows.append(await beside_ceiling("receiver, SQLite", target))

        if args.postgres:
            cluster = ThrowawayPostgres()
            cluster.start()
            try:
                dsn = cluster.create_database("receiver_bench")
                config = work / "postgres.yml"
                config.write_text(
                    receiver_config(
                        'postgres: {dsn: "${BENCH_PG_DSN}", pool_max: 10}',
                        slack_url,
                        args.scheduler_interval,
                    )
                )
                port = free_port()
                async with server(
                    receiver_cmd(config, port), port, work / "postgres.log", {"BENCH_PG_DSN": dsn}
                ) as target:
                    rows.append(await beside_ceiling("receiver, PostgreSQL", target))
            finally:
                cluster.cleanup()
    return rows


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.0%} ({min(values):.0%}-{max(values):.0%})"


def table(rows: list[Row], args: argparse.Namespace) -> str:
    """Markdown tables plus the targets."""
    levels = ", ".join(str(c) for c in args.concurrency)
    lines = [
        f"Throughput: closed loop, {args.rounds} rounds; in each, per concurrency ({levels}) one "
        f"{args.slice:g} s slice of the ceiling and right after it one of the server. Ack "
        f"latency: open loop at {args.rate:g} payloads/s for {args.seconds:g} s. "
        f"{args.slack_samples} sequential posts (POST to fake Slack). {os.cpu_count()} CPUs, "
        "client and servers on the same machine. Lifecycle scheduler interval: "
        f"{args.scheduler_interval or 'default (5s)'}.",
        "",
        "| server | concurrency | ingest (payloads/s, median slice) "
        "| ceiling (/s, median of its paired slices) | share of ceiling (median, range) |",
        "|---|---|---|---|---|",
    ]
    for row in rows[1:]:
        for c in args.concurrency:
            lines.append(
                f"| {row.name} | {c} | {statistics.median(row.rounds.rates[c]):.0f} "
                f"| {statistics.median(row.rounds.ceilings[c]):.0f} "
                f"| {_spread(row.rounds.shares(c))} |"
            )
    lines += [
        "",
        "| server | saturated share of ceiling (median, range) | CPU ms per payload "
        "| ack p50 (ms) | ack p99 (ms) | POST-to-Slack median (ms) "
        "| Level 4 POST-to-Slack in a flood (ms) | drained after a slice (s) "
        "| processed end to end (payloads/s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        rounds = row.rounds
        saturated = _spread(rounds.saturated()) if row is not rows[0] else "100%"
        slack = f"{row.slack_median:.1f}" if row.slack_median is not None else "-"
        urgent = f"{row.urgent_median:.0f}" if row.urgent_median is not None else "-"
        drain = f"{rounds.drain:.1f}" if rounds.drain is not None else "-"
        sustained = f"{rounds.sustained:.0f}" if rounds.sustained else "-"
        lines.append(
            f"| {row.name} | {saturated} | {rounds.cpu_ms:.2f} "
            f"| {row.p50:.2f} | {row.p99:.2f} | {slack} | {urgent} | {drain} | {sustained} |"
        )
    lines += [
        "",
        "Ingest: webhooks answered 2xx per second; each answer means the body is journaled "
        "on disk. Share of ceiling: the median over the rounds of a slice's rate divided by the "
        "bare handler's rate in the slice just before it, at the same concurrency (the range is "
        "the lowest and highest ratio). Saturated share: per round, the server's best rate over "
        "the ceiling's best rate at any of the concurrencies (each at its own saturation), "
        "median and range over the rounds. Processing (incident, outbox) and the Slack message "
        "follow after the answer, yielding to webhooks in flight; each receiver slice is drained "
        "before the next ceiling slice: drained after = mean seconds after a slice until the "
        "journal and outbox gauges read empty (refreshed once a second and read from 1.2 s on, "
        "so it overstates the drain by up to about a second); processed end to end = payloads "
        "/ (slices + drains), understated by as much.",
        "",
        "CPU ms per payload: user + system time of the server process (every thread) over the "
        "slices and their drains, for the receivers including processing and delivering those "
        "payloads; it does not depend on what else runs on the machine, the other columns do.",
        "",
        "Level 4 in a flood: median of 3, a Level 4 notification POSTed 2 s into a 5 s closed-loop "
        f"flood of Level 1 ones at concurrency {max(args.concurrency)}, to its message reaching "
        "the fake Slack (it is processed ahead of the flood's backlog).",
        "",
        "Targets: ingest at least half the ceiling, ack p99 under 20 ms at 200 payloads/s, "
        "POST-to-Slack median under 50 ms.",
    ]
    return "\n".join(lines)


def write_results(path: Path, text: str, command: str) -> None:
    """Replace the receiver block of RESULTS.md (the rest of the file is left alone)."""
    block = f"{BEGIN}\n```\n{command}\n```\n\n{text}\n{END}"
    current = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    if BEGIN in current and END in current:
        head, _, rest = current.partition(BEGIN)
        _, _, tail = rest.partition(END)
        current = head + block + tail
    else:
        current = current.rstrip("\n") + f"\n\n## Receiver\n\n{block}\n"
    path.write_text(current, encoding="utf-8")


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="ack latency phase")
    parser.add_argument("--slice", type=float, default=2.0, help="one throughput slice")
    parser.add_argument("--rounds", type=int, default=5, help="throughput slices per server")
    parser.add_argument(
        "--concurrency",
        type=lambda text: [int(c) for c in text.split(",")],
        default=[32, 128],
        help="closed-loop clients, comma-separated levels (default 32,128)",
    )
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--slack-samples", type=int, default=50)
    parser.add_argument("--no-postgres", dest="postgres", action="store_false")
    parser.add_argument(
        "--scheduler-interval",
        default=None,
        help="lifecycle.scheduler.interval of the receiver (default: the receiver's default)",
    )
    parser.add_argument("--write", type=Path, default=None, help="update this RESULTS.md")
    args = parser.parse_args()
    rows = asyncio.run(run(args))
    text = table(rows, args)
    print()
    print(text)
    if args.write is not None:
        command = ".venv/bin/python bench/receiver_bench.py " + " ".join(sys.argv[1:])
        write_results(args.write, text, command.strip())


if __name__ == "__main__":
    main()
