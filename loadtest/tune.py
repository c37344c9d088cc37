"""A/B settings of a pinned 1-worker hashrank: each variant's server is started in turn, round after round,
and each round runs the same cells, so slow drifts of a shared machine hit every variant alike.

    $ python -m loadtest.tune --variant base: --variant wait0:HASHRANK_MAX_WAIT_MS=0 \\
          --cell score1:32 --cell rank100:8 --rounds 3
    variant  cell        pairs/s (median of rounds)  p50 ms  p99 ms  vs first variant
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from loadtest.bench import json_lines
from loadtest.servers import Server, free_port, pinned, python_module


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """ "name:HASHRANK_A=1,HASHRANK_B=2" -> (name, env); "base:" is the defaults."""
    name, _, assignments = text.partition(":")
    env = dict(a.split("=", 1) for a in assignments.split(",") if a)
    return name, env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--score-model", type=Path, default=Path("models/sts-hash-nano"))
    parser.add_argument("--rank-model", type=Path)
    parser.add_argument("--variant", action="append", required=True, help="NAME:HASHRANK_X=v,HASHRANK_Y=w")
    parser.add_argument("--cell", action="append", required=True, help="WORKLOAD:CONCURRENCY")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--client-cpus", default="1")
    parser.add_argument("--launcher", type=Path, help="a Python script to run instead of `python -m app serve`")
    parser.add_argument("--log", type=Path, default=Path("/tmp/hashrank-tune.log"))
    args = parser.parse_args(argv)
    rank = args.rank_model or args.score_model
    variants = [parse_variant(v) for v in args.variant]
    rows: dict[tuple[str, str], list[dict]] = {}
    ready: dict[str, list[float]] = {}
    rss: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for name, extra in variants:
            port = free_port()
            env = {
                "HASHRANK_HOST": "127.0.0.1",
                "HASHRANK_PORT": str(port),
                "HASHRANK_MODELS": f"score={args.score_model},rank={rank}",
                "HASHRANK_DEFAULT_SCORE_MODEL": "score",
                "HASHRANK_DEFAULT_RANK_MODEL": "rank",
                "HASHRANK_THREADS": "1",
                "HASHRANK_LOG_LEVEL": "warning",
                **extra,
            }
            env = {k: v for k, v in env.items() if v != "unset"}  # HASHRANK_THREADS=unset: the app's default
            cmd = [sys.executable, str(args.launcher)] if args.launcher else python_module("app", "serve")
            with Server(name, cmd, port, args.server_cpus, env, args.log) as server:
                ready.setdefault(name, []).append(server.ready_seconds)
                cmd = python_module(
                    "loadtest.loadgen", server.url, "--seconds", str(args.seconds), "--warmup", str(args.warmup)
                )
                for c in args.cell:
                    cmd += ["--cell", c]
                for row in json_lines(pinned(cmd, args.client_cpus), args.log):
                    rows.setdefault((name, f"{row['workload']}:{row['concurrency']}"), []).append(row)
                    print(json.dumps({"variant": name, **row}), file=sys.stderr, flush=True)
                peak = max(p[3] for p in server.processes() if p[1] == "worker")
                rss.setdefault(name, []).append(peak)
    print("| variant | cell | pairs/s (median) | min-max | p50 ms | p99 ms | vs first | ready s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c in args.cell:
        base = None
        for name, _ in variants:
            runs = rows.get((name, c), [])
            if not runs:
                continue
            tput = statistics.median(r["pairs_per_s"] for r in runs)
            base = base or tput
            lo, hi = min(r["pairs_per_s"] for r in runs), max(r["pairs_per_s"] for r in runs)
            p50 = statistics.median(r["p50_ms"] for r in runs)
            p99 = statistics.median(r["p99_ms"] for r in runs)
            print(
                f"| {name} | {c} | {tput:,.0f} | {lo:,.0f}-{hi:,.0f} | {p50:.1f} | {p99:.1f} | {tput / base:.2f}x "
                f"| {statistics.median(ready[name]):.2f} | {max(rss[name]):.0f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
