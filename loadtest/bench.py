"""`make bench`: hashrank against the in-process ONNX Runtime ceiling and the naive server, in one run.

Order of a run (one core each for server and client where the target says "one core"):
1. ceiling: `loadtest.ceiling` pinned to core 0 (1-thread session, length-sorted batches of 32, shuffled order).
2. hashrank, 1 worker, 1 intra-op thread, pinned to core 0; the load generator pinned to core 1;
   every workload at concurrency 1/8/32.
3. the naive server (`loadtest.naive_server`), pinned the same way, the same cells.
4. hashrank, 2 workers on cores 0-1 (the client then shares both cores; noted in the report).
5. hashrank with the other ONNX file (fp32 <-> int8), 1 worker, a few cells; and on granian (`--server granian`).
6. peers: CrossEncoder in-process, Infinity over HTTP (same model, same core; see loadtest/README.md).
7. the ceiling again: the spread between 1 and 7 is the run's noise.
Raw results go to loadtest/results/<date>.json; loadtest.report writes the .md and .png from it.

    $ python -m loadtest.bench                      # ~6 minutes
    $ python -m loadtest.bench --seconds 2 --quick  # smoke run, ~2 minutes
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from loadtest.servers import ROOT, Server, free_port, pinned, python_module

RESULTS_DIR = ROOT / "loadtest" / "results"
WORKLOADS = ("score1", "score32", "rank20", "rank100", "mix")
CONCURRENCY = (1, 8, 32)
TWO_WORKER_CELLS = ("rank100:8", "rank100:32", "rank20:32", "score1:32", "mix:32")
ALT_BACKEND_CELLS = ("rank100:8", "rank20:32", "score1:32", "mix:32")
GRANIAN_CELLS = ("score1:1", "score1:8", "score1:32", "rank20:1", "rank20:32", "rank100:8", "mix:32")
OTHER = {"onnx": "onnx-int8", "onnx-int8": "onnx"}
VERSIONS = ("onnxruntime", "tokenizers", "numpy", "fastapi", "uvicorn", "uvloop", "httptools", "orjson", "pydantic")


def environment() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    flags: list[str] = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].split()
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for name in VERSIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "app"], cwd=ROOT, capture_output=True, text=True)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "simd": [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags],
        "versions": versions,
        "commit": commit.stdout.strip() + (" (app/ modified)" if dirty.stdout.strip() else ""),
        "loadavg_start": os.getloadavg(),
    }


def default_models() -> tuple[Path, Path]:
    sts, rerank = ROOT / "models" / "sts-hash-nano", ROOT / "models" / "rerank-hash-nano"
    if not (sts / "model.onnx").is_file():
        raise SystemExit(f"{sts}/model.onnx missing: pass --score-model DIR (and --rank-model DIR)")
    return sts, rerank if (rerank / "model.onnx").is_file() else sts


def json_lines(cmd: list[str], log: Path) -> list[dict[str, Any]]:
    with open(log, "ab") as err:
        out = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, check=True)
    return [json.loads(line) for line in out.stdout.decode().splitlines() if line.startswith("{")]


def ceiling(model_dir: Path, workloads: list[str], variants: list[str], args: argparse.Namespace) -> list[dict]:
    cmd = python_module("loadtest.ceiling", str(model_dir), "--seconds", str(args.ceiling_seconds))
    for name in workloads:
        cmd += ["--workload", name]
    for variant in variants:
        cmd += ["--variant", variant]
    rows = json_lines(pinned(cmd, args.server_cpus), args.out_dir / "logs" / "ceiling.log")
    for row in rows:
        row["model"] = model_dir.name
    return rows


def ceilings(score_dir: Path, rank_dir: Path, args: argparse.Namespace, full: bool) -> list[dict]:
    """Ceilings of every workload on the served file; with full=True also the issue's anchor variants
    (fp32/int8, sorted/unsorted on STS-B and 1qx100) and tokenization inside the loop."""
    b = args.backend
    score_w = [w for w in args.workloads if w.startswith("score")]
    # mix holds /score and /rank pairs; the shipped models share one compute shape, so the rank file's
    # ceiling on the mix's pairs is the mix's ceiling.
    rank_w = [w for w in args.workloads if not w.startswith("score")]
    if not full:
        return ceiling(score_dir, ["score32"], [b], args) + ceiling(rank_dir, ["rank100"], [b], args)
    anchors = [v for v in ("onnx", "onnx-int8", "onnx:unsorted", "onnx-int8:unsorted") if v != b]
    rows = ceiling(score_dir, score_w, [b, f"{b}:tokenize"], args)
    rows += ceiling(rank_dir, rank_w, [b, f"{b}:tokenize"], args)
    rows += ceiling(score_dir, ["score32"], anchors, args) + ceiling(rank_dir, ["rank100"], anchors, args)
    return rows


def lone_floor(rank_dir: Path, args: argparse.Namespace) -> list[dict]:
    """The latency floor of a 1qx20 request served alone (loadtest.ceiling --lone), pinned like the ceiling."""
    cmd = python_module("loadtest.ceiling", str(rank_dir), "--lone", "--workload", "rank20", "--variant", args.backend,
                        "--seconds", str(args.ceiling_seconds))
    return json_lines(pinned(cmd, args.server_cpus), args.out_dir / "logs" / "ceiling.log")


# CrossEncoder's ONNX backend runs from its own virtualenv (requirements/peers-st.txt), built by `make bench`.
PEERS_ST_VENV = ROOT / ".venv-peers-st"


def peers(rank_dir: Path, args: argparse.Namespace) -> list[dict]:
    """In-process peers pinned like the ceiling, on the rank workloads (loadtest.peers): CrossEncoder on torch,
    then on ONNX Runtime with the same int8 and fp32 files our server can serve."""
    rows: list[dict] = []
    st_python = PEERS_ST_VENV / "bin" / "python"
    for backend in ("torch", "onnx-int8", "onnx"):
        cmd = python_module(
            "loadtest.peers",
            str(rank_dir),
            "--seconds",
            str(args.ceiling_seconds),
            "--backend",
            backend,
            "--workload",
            "rank20",
            "--workload",
            "rank100",
        )
        if backend != "torch":
            if not st_python.is_file():
                print(f"[bench] no {st_python}: CrossEncoder {backend} skipped (make bench installs it)", flush=True)
                continue
            cmd[0] = str(st_python)
        rows += json_lines(pinned(cmd, args.server_cpus), args.out_dir / "logs" / f"peers-{backend}.log")
    return rows


# The peer server's own virtualenv (its pins clash with ours: numpy<2, sentence-transformers<4); `make bench`
# builds it from requirements/peers.txt.
PEERS_VENV = ROOT / ".venv-peers"
PEER_CELLS = ("rank20:1", "rank20:8", "rank20:32", "rank100:1", "rank100:8", "rank100:32")


def serve_infinity(rank_dir: Path, args: argparse.Namespace) -> Server | None:
    """Infinity (torch engine, 1 thread) serving the same rank model directory; None without its venv."""
    binary = PEERS_VENV / "bin" / "infinity_emb"
    if not binary.is_file():
        print(f"[bench] no {binary}: Infinity skipped (make bench installs it)", flush=True)
        return None
    port = free_port()
    cmd = [str(binary), "v2", "--model-id", str(rank_dir), "--engine", "torch", "--device", "cpu"]
    cmd += ["--port", str(port), "--host", "127.0.0.1", "--trust-remote-code"]
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1"}
    log = args.out_dir / "logs" / "infinity.log"
    return Server("infinity", cmd, port, args.server_cpus, env, log, ready_path="/health")


def serve_ours(
    name: str, args: argparse.Namespace, models: str, *, workers: int, cpus: str, backend: str, server: str = "uvicorn"
) -> Server:
    port = free_port()
    env = {
        "HASHRANK_SERVER": server,
        "HASHRANK_HOST": "127.0.0.1",
        "HASHRANK_PORT": str(port),
        "HASHRANK_WORKERS": str(workers),
        "HASHRANK_BACKEND": backend,
        "HASHRANK_MODELS": models,
        "HASHRANK_DEFAULT_SCORE_MODEL": "score",
        "HASHRANK_DEFAULT_RANK_MODEL": "rank",
        "HASHRANK_LOG_LEVEL": "warning",
        # One intra-op thread per worker: each worker owns one core (the default counts all cores).
        "HASHRANK_THREADS": "1",
    }
    return Server(name, python_module("app", "serve"), port, cpus, env, args.out_dir / "logs" / f"{name}.log")


def drive(
    server: Server, cells: list[str], args: argparse.Namespace, client_cpus: str | None, rank_path: str = "/rank"
) -> list[dict]:
    cmd = python_module("loadtest.loadgen", server.url, "--seconds", str(args.seconds), "--warmup", str(args.warmup))
    cmd += ["--rank-path", rank_path]
    for cell in cells:
        cmd += ["--cell", cell]
    rows = json_lines(pinned(cmd, client_cpus), args.out_dir / "logs" / "loadgen.log")
    for row in rows:
        row["server"] = server.name
    return rows


def footprint(server: Server) -> dict[str, Any]:
    procs = server.processes()
    return {
        "ready_seconds": round(server.ready_seconds, 3),
        "processes": [
            {"pid": p, "role": role, "rss_mb": round(r, 1), "peak_rss_mb": round(h, 1), "cpu_s": round(c, 1)}
            for p, role, r, h, c in procs
        ],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    score_dir, rank_dir = (
        (args.score_model, args.rank_model or args.score_model) if args.score_model else default_models()
    )
    models = f"score={score_dir},rank={rank_dir}"
    all_cells = [f"{w}:{c}" for w in args.workloads for c in args.concurrency]
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "env": environment(),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "models": {
            "score": str(score_dir.relative_to(ROOT) if score_dir.is_relative_to(ROOT) else score_dir),
            "rank": str(rank_dir.relative_to(ROOT) if rank_dir.is_relative_to(ROOT) else rank_dir),
        },
        "cells": [],
        "footprint": {},
    }
    print(f"[bench] ceiling (start) on cpu {args.server_cpus}", flush=True)
    result["ceiling_start"] = ceilings(score_dir, rank_dir, args, full=not args.quick)
    result["lone_floor"] = lone_floor(rank_dir, args)
    if not args.quick:
        print(f"[bench] in-process peers on cpu {args.server_cpus}", flush=True)
        result["peers"] = peers(rank_dir, args)

    plan: list[tuple[str, Server, list[str], str | None]] = [
        (
            "ours-1w",
            serve_ours("ours-1w", args, models, workers=1, cpus=args.server_cpus, backend=args.backend),
            all_cells,
            args.client_cpus,
        ),
        (
            "naive",
            Server(
                "naive",
                python_module(
                    "loadtest.naive_server",
                    "--score-model",
                    str(score_dir),
                    "--rank-model",
                    str(rank_dir),
                    "--backend",
                    args.backend,
                    "--port",
                    str(port := free_port()),
                ),
                port,
                args.server_cpus,
                log_path=args.out_dir / "logs" / "naive.log",
            ),
            all_cells,
            args.client_cpus,
        ),
    ]
    if not args.quick:
        plan.append(
            (
                "ours-2w",
                serve_ours("ours-2w", args, models, workers=2, cpus=args.all_cpus, backend=args.backend),
                list(TWO_WORKER_CELLS),
                args.all_cpus,
            )
        )
        alt = OTHER[args.backend]
        plan.append(
            (
                f"ours-1w-{alt}",
                serve_ours(f"ours-1w-{alt}", args, models, workers=1, cpus=args.server_cpus, backend=alt),
                list(ALT_BACKEND_CELLS),
                args.client_cpus,
            )
        )
    if not args.quick:
        granian = serve_ours(
            "ours-1w-granian", args, models, workers=1, cpus=args.server_cpus, backend=args.backend, server="granian"
        )
        plan.append(("ours-1w-granian", granian, list(GRANIAN_CELLS), args.client_cpus))
    infinity = None if args.quick else serve_infinity(rank_dir, args)
    if infinity is not None:
        plan.append(("infinity", infinity, list(PEER_CELLS), args.client_cpus))
    for name, server, cells, client_cpus in plan:
        print(f"[bench] {name}: starting on cpus {server.cpus}", flush=True)
        with server:
            print(f"[bench] {name}: ready in {server.ready_seconds:.2f}s; {len(cells)} cells", flush=True)
            rows = drive(server, cells, args, client_cpus, rank_path="/rerank" if name == "infinity" else "/rank")
            result["footprint"][name] = footprint(server)
        for row in rows:
            print(
                f"[bench]   {row['workload']:>8} c={row['concurrency']:<3} {row['pairs_per_s']:>8.0f} pairs/s "
                f"p50 {row['p50_ms']:.1f} ms p99 {row['p99_ms']:.1f} ms errors {row['errors'] or 0}",
                flush=True,
            )
        result["cells"] += rows

    print("[bench] ceiling (end)", flush=True)
    result["ceiling_end"] = ceilings(score_dir, rank_dir, args, full=False)
    result["env"]["loadavg_end"] = os.getloadavg()
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--score-model", type=Path, help="default models/sts-hash-nano")
    parser.add_argument("--rank-model", type=Path, help="default models/rerank-hash-nano, else the score model")
    parser.add_argument(
        "--backend", choices=sorted(OTHER), default="onnx-int8", help="the ONNX file hashrank serves (its default)"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=1.5, help="unrecorded seconds before each cell")
    parser.add_argument("--ceiling-seconds", type=float, default=3.0)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--concurrency", nargs="+", type=int, default=list(CONCURRENCY))
    parser.add_argument("--quick", action="store_true", help="only ours-1w and naive, fewer ceilings")
    parser.add_argument("--server-cpus", default="0", help="taskset list for a 1-core server")
    parser.add_argument("--client-cpus", default="1", help="taskset list for the load generator")
    parser.add_argument("--all-cpus", default="0,1", help="taskset list for the 2-worker server and its client")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--name", help="results file stem; default today's date (YYYY-MM-DD)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from loadtest.report import write_report

    args = parse_args(argv)
    (args.out_dir / "logs").mkdir(parents=True, exist_ok=True)  # server and client logs, not committed
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = run(args)
    stem = args.name or dt.date.today().isoformat()
    raw = args.out_dir / f"{stem}.json"
    raw.write_text(json.dumps(result, indent=1) + "\n")
    md, png = write_report(result, args.out_dir, stem)
    print(f"[bench] done in {result['wall_seconds']:.0f}s: {md} {png} {raw}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
