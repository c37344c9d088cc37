"""`make reliability`: the whole torture suite of issue 25, with its figures in loadtest/results/reliability-<date>.md.

1. runs tests/reliability (contract, slow clients, drain, worker death, input torture, security) and keeps the
   figures they print;
2. overload: measures the sustainable rate of the mix workload (closed loop, 4 connections), then offers 10x
   that rate open-loop for 30 s, every request with its own deadline (timeout_ms): only 200, 429 (with
   Retry-After) and 504 past the request's own deadline may come back; then times the return of idle p50;
3. soak: 10 minutes of the mix at 4 connections; RSS growth after warm-up, open descriptors, errors.

All traffic goes to servers it starts on 127.0.0.1. The machine's load average is recorded: the figures
are only as good as the quiet of the machine.

    $ python -m loadtest.reliability --soak-s 600        # what `make reliability` runs
    $ python -m loadtest.reliability --soak-s 60 --skip-tests   # a shortened run
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from loadtest.loadgen import Connection, percentile, run_cell
from loadtest.servers import ROOT, Server, free_port, rss_mb
from loadtest.workloads import Request, Workload, build_workloads, data_dir

RESULTS = ROOT / "loadtest" / "results"
DEADLINE_MS = 2000  # each overload request's own timeout_ms
OVERLOAD_FACTOR = 10
MAX_CONNECTIONS = 400  # the open-loop client's connection pool; arrivals beyond it are counted, not sent
PAIR = ["a man plays guitar", "a person plays music"]


def serve(name: str, log_dir: Path) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    return Server(name, cmd, port, env={"PYTHONPATH": str(ROOT)}, log_path=log_dir / f"{name}.log")


def with_deadline(workload: Workload, timeout_ms: int) -> list[Request]:
    out = []
    for r in workload.requests:
        body = orjson.loads(r.body)
        body["timeout_ms"] = timeout_ms
        out.append(Request(r.path, orjson.dumps(body), r.pairs))
    return out


# Idle and recovery probes are paced alike: a request after a pause is slower than one right after another
# (threads and caches go cold; ~2.9 vs ~1.8 ms here), so probes paced differently are not comparable.
PROBE_GAP_S = 0.05


async def probe_ms(client: httpx.AsyncClient) -> float:
    """One 1-pair /score after a PROBE_GAP_S pause: its latency in ms."""
    await asyncio.sleep(PROBE_GAP_S)
    t0 = time.perf_counter()
    (await client.post("/score", json={"pairs": [PAIR]})).raise_for_status()
    return (time.perf_counter() - t0) * 1000


async def idle_p50(url: str, n: int = 20) -> float:
    """p50 (ms) of n paced 1-pair /score requests on one connection."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return statistics.median([await probe_ms(client) for _ in range(n)])


async def overload(server: Server, workload: Workload, seconds: float) -> dict[str, Any]:
    assert server.proc is not None
    sustainable = await run_cell(server.url, workload, 4, warmup=2, seconds=8)
    idle = await idle_p50(server.url)
    rate = OVERLOAD_FACTOR * sustainable.rps
    requests = with_deadline(workload, DEADLINE_MS)
    statuses: dict[str, int] = {}
    late_504 = early_504 = 0
    accepted: list[float] = []
    pool: list[Connection] = []
    open_connections = 0
    rss_peak = rss_mb(server.proc.pid)[0]
    retry_after: list[bool] = []
    host, port = "127.0.0.1", server.port

    async def one(i: int) -> None:
        nonlocal open_connections, late_504, early_504
        if pool:
            conn = pool.pop()
        elif open_connections < MAX_CONNECTIONS:
            open_connections += 1
            conn = Connection(host, port)
        else:
            statuses["client pool full"] = statuses.get("client pool full", 0) + 1
            return
        t0 = time.perf_counter()
        try:
            status, _ = await conn.request(requests[i % len(requests)])
        except (OSError, asyncio.IncompleteReadError, RuntimeError) as exc:
            statuses[type(exc).__name__] = statuses.get(type(exc).__name__, 0) + 1
            await conn.close()
            open_connections -= 1
            return
        elapsed = (time.perf_counter() - t0) * 1000
        pool.append(conn)
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if status == 200:
            accepted.append(elapsed)
        elif status == 504:
            late_504 += elapsed >= DEADLINE_MS * 0.95
            early_504 += elapsed < DEADLINE_MS * 0.95

    async def probe() -> None:  # a side client that reads headers: every 429 must say when to retry
        big = {"query": "q", "documents": ["d"] * 1000, "timeout_ms": DEADLINE_MS}  # refused once 3,097 pairs wait
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            while time.perf_counter() < stop:
                r = await client.post("/rank", json=big)
                if r.status_code == 429:
                    retry_after.append("retry-after" in r.headers)
                await asyncio.sleep(0.5)  # 1,000 pairs a time: more often would be a load of its own

    lags: list[float] = []

    async def client_lag() -> None:  # how late the client's own event loop runs: its share of every latency
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append((time.perf_counter() - t0 - 0.01) * 1000)

    histogram_before = await latency_buckets(server.url)
    start = time.perf_counter()
    stop = start + seconds
    prober = asyncio.create_task(probe())
    lagger = asyncio.create_task(client_lag())
    tasks = []
    sent = 0
    while (now := time.perf_counter()) < stop:
        due = int((now - start) * rate)
        while sent < due:
            tasks.append(asyncio.create_task(one(sent)))
            sent += 1
        rss_peak = max(rss_peak, rss_mb(server.proc.pid)[0])
        await asyncio.sleep(0.005)
    await asyncio.gather(*tasks)
    await prober
    await lagger
    offered_s = time.perf_counter() - start
    server_side = bucket_quantiles(histogram_before, await latency_buckets(server.url))
    # Recovery: sequential requests until the p50 of the last 5 is back within 1.5x idle (or +2 ms).
    recovered_s = None
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        recent: list[float] = []
        t_end = time.perf_counter()
        while time.perf_counter() - t_end < 30:
            recent = [*recent[-4:], await probe_ms(client)]
            if len(recent) == 5 and statistics.median(recent) <= max(1.5 * idle, idle + 2):
                recovered_s = time.perf_counter() - t_end
                break
    for conn in pool:
        await conn.close()
    accepted.sort()
    return {
        "sustainable_rps": round(sustainable.rps, 1),
        "sustainable_p50_ms": sustainable.p50_ms,
        "offered_rps": round(sent / offered_s, 1),
        "target_rps": round(rate, 1),
        "seconds": round(offered_s, 1),
        "requests": sent,
        "statuses": dict(sorted(statuses.items())),
        "504_before_own_deadline": early_504,
        "504_after_own_deadline": late_504,
        "accepted_p50_ms": round(percentile(accepted, 50), 1),
        "accepted_p99_ms": round(percentile(accepted, 99), 1),
        "server_p50_p99_ms": server_side,
        "client_loop_lag_p50_p99_ms": [round(percentile(sorted(lags), q), 1) for q in (50, 99)],
        "deadline_ms": DEADLINE_MS,
        "429_with_retry_after": f"{sum(retry_after)}/{len(retry_after)}",
        "rss_before_mb": None,
        "rss_peak_mb": round(rss_peak, 1),
        "idle_p50_ms": round(idle, 2),
        "recovered_s": None if recovered_s is None else round(recovered_s, 2),
    }


async def latency_buckets(url: str) -> dict[float, float]:
    """hashrank_request_duration_seconds for /score and /rank, cumulative count per upper bound (s)."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        text = (await client.get("/metrics")).text
    out: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("hashrank_request_duration_seconds_bucket{") and re.search(r'route="/(score|rank)"', line):
            bound = float(re.search(r'le="([^"]+)"', line).group(1))  # type: ignore[union-attr]
            out[bound] = out.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def bucket_quantiles(before: dict[float, float], after: dict[float, float]) -> list[float]:
    """Server-side p50 and p99 (ms, the bucket's upper bound) of the requests between two scrapes."""
    delta = sorted((bound, after[bound] - before.get(bound, 0.0)) for bound in after)
    total = delta[-1][1] if delta else 0.0
    return [next((b * 1000 for b, n in delta if n >= q * total), float("inf")) for q in (0.5, 0.99)]


def fifth(samples: list[tuple[float, float, int]], which: int) -> float:
    """Median RSS of the first (which=0) or last (which=-1) fifth of the samples."""
    n = max(1, len(samples) // 5)
    part = samples[:n] if which == 0 else samples[-n:]
    return statistics.median(rss for _, rss, _ in part)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def soak(server: Server, workload: Workload, seconds: float) -> dict[str, Any]:
    assert server.proc is not None
    warmup = min(60.0, seconds / 5)
    samples: list[tuple[float, float, int]] = []
    done = asyncio.Event()

    async def sample() -> None:
        start = time.perf_counter()
        while not done.is_set():
            pid = server.proc.pid  # type: ignore[union-attr]
            samples.append((time.perf_counter() - start, rss_mb(pid)[0], open_fds(pid)))
            await asyncio.sleep(5)

    sampler = asyncio.create_task(sample())
    cell = await run_cell(server.url, workload, 4, warmup=warmup, seconds=seconds - warmup, max_seconds=seconds)
    done.set()
    await sampler
    after_warmup = [s for s in samples if s[0] >= warmup]
    base_rss, base_fds = after_warmup[0][1], after_warmup[0][2]
    end_rss, end_fds = samples[-1][1], samples[-1][2]
    return {
        "seconds": round(seconds, 1),
        "warmup_s": round(warmup, 1),
        "requests": cell.requests,
        "rps": round(cell.rps, 1),
        "p50_ms": cell.p50_ms,
        "p99_ms": cell.p99_ms,
        "errors": cell.errors,
        "rss_after_warmup_mb": round(base_rss, 1),
        "rss_end_mb": round(end_rss, 1),
        "rss_max_mb": round(max(s[1] for s in after_warmup), 1),
        "rss_growth_pct": round(100 * (end_rss - base_rss) / base_rss, 2),
        # One sample swings by several % (allocator, ONNX Runtime's arena): medians of the first and last
        # fifth after warm-up say whether it trends.
        "rss_growth_median_pct": round(100 * (fifth(after_warmup, -1) / fifth(after_warmup, 0) - 1), 2),
        "fds_after_warmup": base_fds,
        "fds_end": end_fds,
        "fds_max": max(s[2] for s in after_warmup),
        "rss_every_60s_mb": [round(rss, 1) for t, rss, _ in samples if int(t) % 60 < 5],
    }


# The figures the tests print (after pytest's progress dots, on the same line).
FIGURE = re.compile(r"(schemathesis: .*|with \d+ stalled .*|drain: .*|worker death: .*)$", re.M)


def run_tests(log_dir: Path) -> dict[str, Any]:
    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/reliability", "-q", "-s", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    (log_dir / "pytest.log").write_text(run.stdout + run.stderr)
    summary = [line for line in run.stdout.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    return {
        "returncode": run.returncode,
        "summary": summary[-1] if summary else "(no summary)",
        "figures": FIGURE.findall(run.stdout),
        "seconds": round(time.perf_counter() - started, 1),
    }


def render(result: dict[str, Any]) -> str:
    o, s, t = result.get("overload"), result.get("soak"), result.get("tests")
    lines = [
        f"# Reliability run {result['date']}",
        "",
        f"`{result['command']}` on {result['cpus']} CPUs; load average {result['load_before']} before, "
        f"{result['load_after']} after (1/5/15 min). "
        + (
            "Other work shared the CPUs (1-minute load above 0.5 before the run): latencies are upper bounds."
            if result["load_before"][0] > 0.5
            else "Nothing else was running (1-minute load below 0.5 before the run); the load generator and the "
            "server share the same CPUs."
        ),
        "",
    ]
    if t:
        lines += ["## Test suite (tests/reliability)", "", f"`{t['summary']}` ({t['seconds']} s)", ""]
        lines += [f"- {f}" for f in t["figures"]] + [""]
    if o:
        lines += [
            f"## Overload: {OVERLOAD_FACTOR}x the sustainable rate for {o['seconds']} s (mix workload)",
            "",
            "| figure | value |",
            "|---|---|",
            f"| sustainable rate (closed loop, 4 connections) | {o['sustainable_rps']} req/s, "
            f"p50 {o['sustainable_p50_ms']} ms |",
            f"| offered (target) | {o['offered_rps']} ({o['target_rps']}) req/s, {o['requests']} requests |",
            f"| answers | {o['statuses']} |",
            f"| 504 before / after the request's own {o['deadline_ms']} ms deadline | "
            f"{o['504_before_own_deadline']} / {o['504_after_own_deadline']} |",
            f"| accepted (200) p50 / p99, client side | {o['accepted_p50_ms']} / {o['accepted_p99_ms']} ms |",
            f"| all /score and /rank answers p50 / p99, server side (bucket bound) | {o['server_p50_p99_ms']} ms |",
            f"| the load generator's own event-loop lag p50 / p99 (part of every client-side latency) | "
            f"{o.get('client_loop_lag_p50_p99_ms')} ms |",
            f"| 429 carrying Retry-After (side probe) | {o['429_with_retry_after']} |",
            f"| server RSS before / peak | {o['rss_before_mb']} / {o['rss_peak_mb']} MB |",
            f"| idle p50; back within 1.5x of it after the load | {o['idle_p50_ms']} ms; {o['recovered_s']} s |",
            "",
        ]
    if s:
        lines += [
            f"## Soak: {s['seconds']} s of the mix at 4 connections (warm-up {s['warmup_s']} s)",
            "",
            "| figure | value |",
            "|---|---|",
            f"| requests / rate | {s['requests']} / {s['rps']} req/s (p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms) |",
            f"| errors | {s['errors'] or 0} |",
            f"| RSS after warm-up / end / max | {s['rss_after_warmup_mb']} / {s['rss_end_mb']} / "
            f"{s['rss_max_mb']} MB |",
            f"| RSS growth after warm-up: last sample / median of last fifth vs first fifth | "
            f"{s['rss_growth_pct']}% / {s.get('rss_growth_median_pct', '-')}% |",
            f"| RSS each minute | {s.get('rss_every_60s_mb', '(not recorded)')} MB |",
            f"| open descriptors after warm-up / end / max | {s['fds_after_warmup']} / {s['fds_end']} / "
            f"{s['fds_max']} |",
            "",
        ]
    lines += ["```json", orjson.dumps(result, option=orjson.OPT_INDENT_2).decode(), "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--overload-s", type=float, default=30)
    parser.add_argument("--soak-s", type=float, default=600)
    parser.add_argument("--skip-tests", action="store_true", help="only overload and soak")
    parser.add_argument("--out", type=Path, default=None, help="default: loadtest/results/reliability-<date>.md")
    args = parser.parse_args(argv)
    date = dt.date.today().isoformat()
    out = args.out or RESULTS / f"reliability-{date}.md"
    log_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"hashrank-reliability-{os.getpid()}"
    log_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "date": date,
        "command": "python -m loadtest.reliability " + " ".join(argv if argv is not None else sys.argv[1:]),
        "cpus": len(os.sched_getaffinity(0)),
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }
    if not args.skip_tests:
        result["tests"] = run_tests(log_dir)
    mix = build_workloads(data_dir())["mix"]
    if args.overload_s > 0:
        with serve("overload", log_dir) as server:
            assert server.proc is not None
            rss_before = rss_mb(server.proc.pid)[0]
            result["overload"] = asyncio.run(overload(server, mix, args.overload_s))
            result["overload"]["rss_before_mb"] = round(rss_before, 1)
    if args.soak_s > 0:
        with serve("soak", log_dir) as server:
            result["soak"] = asyncio.run(soak(server, mix, args.soak_s))
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(result))
    print(render(result))  # noqa: T201
    failed = result.get("tests", {}).get("returncode", 0) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
