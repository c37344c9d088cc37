"""Closed-loop async load generator: C connections each send the next request as soon as the previous one
answers, for a warm-up then a fixed measured window.

It speaks minimal HTTP/1.1 keep-alive over asyncio streams (uvloop when installed) instead of httpx:
a generic client costs a few hundred microseconds of CPU per request, which at 1-pair requests would
make the client, not the server, the bottleneck. Only Content-Length and chunked bodies are read.

    $ taskset -c 1 python -m loadtest.loadgen http://127.0.0.1:8080 --workload rank20 --concurrency 8
    {"workload": "rank20", "concurrency": 8, "rps": 61.2, "pairs_per_s": 1224.0, "p50_ms": 128.1, ...}
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from urllib.parse import urlsplit

import orjson

from loadtest.workloads import Request, Workload, build_workloads, data_dir


@dataclass
class CellResult:
    """One (workload, concurrency) measurement against one server."""

    workload: str
    concurrency: int
    seconds: float  # measured window
    requests: int  # completed with 200 inside the window
    errors: dict[str, int] = field(default_factory=dict)  # status or exception name -> count
    rps: float = 0.0
    pairs_per_s: float = 0.0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    mean_ms: float = 0.0
    # Server-side counters over the cell (warm-up included), from GET /metrics when the server has it.
    server_metrics: dict[str, float] = field(default_factory=dict)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an ascending list; 0.0 when empty."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


def summarize(
    workload: str, concurrency: int, seconds: float, samples: list[tuple[float, int]], errors: dict[str, int]
) -> CellResult:
    """samples: (latency seconds, pairs) of the requests that completed inside the window."""
    lat = sorted(s[0] * 1000 for s in samples)
    pairs = sum(s[1] for s in samples)
    return CellResult(
        workload=workload,
        concurrency=concurrency,
        seconds=round(seconds, 3),
        requests=len(lat),
        errors=dict(errors),
        rps=round(len(lat) / seconds, 2),
        pairs_per_s=round(pairs / seconds, 1),
        p50_ms=round(percentile(lat, 50), 2),
        p95_ms=round(percentile(lat, 95), 2),
        p99_ms=round(percentile(lat, 99), 2),
        mean_ms=round(sum(lat) / len(lat), 2) if lat else 0.0,
    )


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, req: Request) -> tuple[int, bytes]:
        return await self.send("POST", req.path, req.body)

    async def send(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode("ascii") + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = await self._read_chunked()
        else:
            raise RuntimeError("response has neither Content-Length nor chunked encoding")
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, body

    async def _read_chunked(self) -> bytes:
        assert self.reader is not None
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


# Prometheus series summed over their labels; deltas over a cell give the server's own breakdown.
SERIES = (
    "hashrank_batch_size_pairs_sum",
    "hashrank_batch_size_pairs_count",
    "hashrank_batch_padded_tokens_sum",
    "hashrank_batch_tokens_total",
    "hashrank_inference_duration_seconds_sum",
    "hashrank_tokenize_duration_seconds_sum",
    "hashrank_queue_wait_duration_seconds_sum",
    "hashrank_queue_wait_duration_seconds_count",
)


def parse_metrics(text: str) -> dict[str, float]:
    """Sum each series of SERIES over its label sets in a Prometheus text exposition."""
    out = dict.fromkeys(SERIES, 0.0)
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in out:
            out[name] += float(line.rsplit(" ", 1)[1])
    return out


async def scrape(host: str, port: int) -> dict[str, float] | None:
    conn = Connection(host, port)
    try:
        status, body = await conn.send("GET", "/metrics")
    except (OSError, asyncio.IncompleteReadError, RuntimeError):
        return None
    finally:
        await conn.close()
    return parse_metrics(body.decode()) if status == 200 else None


def check_body(req: Request, body: bytes) -> None:
    """The answer holds one score per pair (catches a server that answers fast but wrong)."""
    doc = orjson.loads(body)
    n = len(doc["scores"]) if req.path == "/score" else len(doc["results"])
    if n != req.pairs:
        raise AssertionError(f"{req.path}: {n} scores for {req.pairs} pairs")


async def run_cell(
    url: str, workload: Workload, concurrency: int, warmup: float, seconds: float, max_seconds: float | None = None
) -> CellResult:
    """Drive `workload` with `concurrency` connections: `warmup` s unrecorded, then a measured window.

    The window lasts `seconds`, stretched (up to `max_seconds`, default 3x) until at least 2 x concurrency
    requests have completed in it: with long requests at high concurrency a short window would hold
    none, and its throughput would read as zero.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = workload.requests
    counter = iter(range(1 << 62))
    min_samples = 2 * concurrency
    samples: list[tuple[float, int]] = []
    errors: dict[str, int] = {}
    stop_at: float | None = None
    before = await scrape(host, port)
    start = time.perf_counter()
    window_start = start + warmup
    deadline, hard = window_start + seconds, window_start + (max_seconds or 3 * seconds)

    async def monitor() -> None:
        nonlocal stop_at
        await asyncio.sleep(max(0.0, deadline - time.perf_counter()))
        while len(samples) < min_samples and time.perf_counter() < hard:
            await asyncio.sleep(0.02)
        stop_at = time.perf_counter()

    async def worker() -> None:
        conn = Connection(host, port)
        checked = False
        try:
            while stop_at is None:
                t0 = time.perf_counter()
                req = requests[next(counter) % len(requests)]
                try:
                    status, body = await conn.request(req)
                except (OSError, asyncio.IncompleteReadError, RuntimeError) as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    await conn.close()
                    await asyncio.sleep(0.01)  # a refused connection must not spin
                    continue
                t1 = time.perf_counter()
                if status != 200:
                    errors[str(status)] = errors.get(str(status), 0) + 1
                    await asyncio.sleep(0.001)  # 429s come back at once; do not spin on them
                    continue
                if not checked:
                    check_body(req, body)
                    checked = True
                if t1 >= window_start and stop_at is None:
                    samples.append((t1 - t0, req.pairs))
        finally:
            await conn.close()

    await asyncio.gather(monitor(), *(worker() for _ in range(concurrency)))
    assert stop_at is not None
    result = summarize(workload.name, concurrency, stop_at - window_start, samples, errors)
    after = await scrape(host, port)
    if before and after and after["hashrank_batch_size_pairs_count"] > 0:
        result.server_metrics = {k: round(after[k] - before[k], 6) for k in SERIES}
        result.server_metrics["wall_seconds"] = round(time.perf_counter() - start, 3)
    return result


def run_plan(
    url: str, cells: list[tuple[str, int]], warmup: float, seconds: float, rank_path: str = "/rank"
) -> list[CellResult]:
    """Run cells one after the other in a fresh event loop; workloads are built once. `rank_path` sends the
    /rank bodies ({"query", "documents"}) elsewhere, e.g. a peer's /rerank."""
    workloads = {name: on_rank_path(w, rank_path) for name, w in build_workloads(data_dir()).items()}
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # plain asyncio is fine, only slower per request
        runner = asyncio.run

    async def all_cells() -> list[CellResult]:
        out = []
        for name, conc in cells:
            result = await run_cell(url, workloads[name], conc, warmup, seconds)
            print(json.dumps(asdict(result)), flush=True)
            out.append(result)
        return out

    return runner(all_cells())


def on_rank_path(workload: Workload, path: str) -> Workload:
    requests = [replace(r, path=path) if r.path == "/rank" else r for r in workload.requests]
    return replace(workload, requests=requests)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="base URL of a running hashrank, e.g. http://127.0.0.1:8080")
    parser.add_argument("--workload", action="append", help="score1/score32/rank20/rank100/mix (repeatable)")
    parser.add_argument("--concurrency", action="append", type=int, help="repeatable; default 1, 8, 32")
    parser.add_argument("--cell", action="append", default=[], help="WORKLOAD:CONCURRENCY instead of the product")
    parser.add_argument("--warmup", type=float, default=1.5, help="unrecorded seconds before each window")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per cell")
    parser.add_argument("--rank-path", default="/rank", help="where the rank workloads go (a peer's /rerank)")
    args = parser.parse_args(argv)
    cells = [(w, int(c)) for w, _, c in (cell.partition(":") for cell in args.cell)]
    if not cells:
        cells = [(w, c) for w in args.workload or ["rank20"] for c in args.concurrency or [1, 8, 32]]
    run_plan(args.url.rstrip("/"), cells, args.warmup, args.seconds, args.rank_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
