"""Where a pinned 1-worker hashrank spends its CPU under load: py-spy samples every thread while the load
generator drives one workload, then the stacks are summarised by self time and by stage.

    $ python -m loadtest.profile --score-model models/sts-hash-nano --workload rank20 --concurrency 32
    stage shares (of all samples, every thread): ort 61%, tokenize 9%, http+json 14%, ...

Needs py-spy (pip install py-spy) and ptrace rights over the child (root, or ptrace_scope 0).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import time
from pathlib import Path

from loadtest.servers import Server, free_port, pinned, python_module

# A stack belongs to the stage of its deepest (leaf-most) frame that matches one; every main-thread stack
# has uvicorn at its root, so matching from the root would call everything HTTP.
STAGES = (
    ("ort (InferenceSession.run)", ("onnxruntime_inference_collection.py", "run (onnxruntime")),
    ("tokenize (encode_batch)", ("encode_batch", "encode_pairs", "_to_pair")),
    ("pad (tokenizer.pad)", ("pad (app/modeling/tokenizer.py",)),
    ("batcher (app/batching.py)", ("app/batching.py",)),
    ("validation (pydantic/fastapi)", ("pydantic", "fastapi/routing.py", "fastapi/dependencies")),
    ("json encode/decode", ("orjson", "json/", "responses.py")),
    ("http (uvicorn/starlette/h11/httptools)", ("uvicorn", "starlette", "httptools", "h11")),
    ("metrics (prometheus_client)", ("prometheus_client", "app/metrics.py")),
    ("event loop / asyncio", ("asyncio", "uvloop")),
    ("thread hand-offs (futures, queues, locks)", ("concurrent/futures", "threading.py", "queue.py")),
)


def stage_of(stack: str) -> str:
    for frame in reversed(stack.split(";")):
        for name, needles in STAGES:
            if any(n in frame for n in needles):
                return name
    return "other"


def summarize(raw: Path, top: int = 25) -> str:
    """py-spy --format raw (collapsed stacks `f1;f2;... count`) -> stage shares and top self-time frames."""
    stages: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        stages[stage_of(stack)] += n
        leaves[stack.split(";")[-1]] += n
    out = [f"{total} samples (all threads; idle threads not sampled)", "", "| stage | share |", "|---|---|"]
    out += [f"| {name} | {n / total:.0%} |" for name, n in stages.most_common()]
    out += ["", "| self-time frame | share |", "|---|---|"]
    out += [f"| `{name}` | {n / total:.1%} |" for name, n in leaves.most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--score-model", type=Path, default=Path("models/sts-hash-nano"))
    parser.add_argument("--rank-model", type=Path)
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--workload", default="rank20")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--env", action="append", default=[], help="extra HASHRANK_X=value for the server")
    parser.add_argument("--out", type=Path, default=Path("/tmp/hashrank-profile.txt"))
    args = parser.parse_args(argv)
    if shutil.which("py-spy") is None and not (Path(sys.executable).parent / "py-spy").exists():
        raise SystemExit("py-spy not found: pip install py-spy")
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    port = free_port()
    rank = args.rank_model or args.score_model
    env = {
        "HASHRANK_HOST": "127.0.0.1",
        "HASHRANK_PORT": str(port),
        "HASHRANK_MODELS": f"score={args.score_model},rank={rank}",
        "HASHRANK_DEFAULT_SCORE_MODEL": "score",
        "HASHRANK_DEFAULT_RANK_MODEL": "rank",
        "HASHRANK_BACKEND": args.backend,
        "HASHRANK_THREADS": "1",
        "HASHRANK_LOG_LEVEL": "warning",
        **dict(e.split("=", 1) for e in args.env),
    }
    with Server("profiled", python_module("app", "serve"), port, "0", env) as server:
        cmd = python_module("loadtest.loadgen", server.url, "--cell", f"{args.workload}:{args.concurrency}")
        load = subprocess.Popen(
            pinned([*cmd, "--warmup", "2", "--seconds", str(args.seconds + 4)], "1"), stdout=subprocess.PIPE
        )
        time.sleep(3)
        assert server.proc is not None
        subprocess.run(
            [spy, "record", "--pid", str(server.proc.pid), "--duration", str(int(args.seconds)), "--rate", "200",
             "--format", "raw", "--output", str(args.out), "--nonblocking"],
            check=True, capture_output=True,
        )  # fmt: skip
        stdout, _ = load.communicate(timeout=120)
    print(stdout.decode().strip())
    print(summarize(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
