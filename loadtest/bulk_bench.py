"""Throughput of `hashrank bulk-score` (Ray Data) with 1 and 2 actors against the in-process ceiling.

The pairs are SNLI dev + test and STS-B dev (21,166 real pairs of mixed lengths), cycled up to --pairs. The
ceiling is loadtest/ceiling.py on the same pairs with tokenizing in the loop (one 1-thread session, no Ray); each
Ray run is timed from the dataset's start to the last file written, actor start-up and model loading included
(`ray.init()` excluded: it is paid once per cluster, not per job). Run it on an otherwise idle machine:

    $ python -m loadtest.bulk_bench models/sts-hash-nano --pairs 200000 --actors 1,2
    | run | pairs | seconds | pairs/s | x ceiling (1 thread) |
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
from pathlib import Path

from loadtest.ceiling import Ceiling
from loadtest.workloads import data_dir


def bulk_pairs(root: Path) -> list[tuple[str, str]]:
    """SNLI dev + test (19,666 pairs) and STS-B dev (1,500): 21,166 real pairs of mixed lengths."""
    pairs: list[tuple[str, str]] = []
    snli = root / "snli-devtest"
    for split in ("dev", "test"):
        first = (snli / f"s1.{split}").read_text(encoding="utf-8").splitlines()
        second = (snli / f"s2.{split}").read_text(encoding="utf-8").splitlines()
        pairs.extend(zip(first, second, strict=True))
    for line in (root / "stsbenchmark" / "sts-dev.csv").read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        pairs.append((fields[5], fields[6]))
    return pairs


def write_jsonl(pairs: list[tuple[str, str]], path: Path) -> Path:
    path.write_text("".join(json.dumps({"id": i, "a": a, "b": b}) + "\n" for i, (a, b) in enumerate(pairs)), "utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--pairs", type=int, default=200_000, help="pairs scored per run (the real ones, cycled)")
    parser.add_argument("--actors", default="1,2", help="comma-separated actor counts, one run each")
    parser.add_argument("--rows-per-call", type=int, default=4096)
    parser.add_argument("--ceiling-seconds", type=float, default=10.0)
    parser.add_argument("--object-store-mb", type=int, default=512)
    args = parser.parse_args(argv)

    import ray  # the [ray] extra

    from app.bulk import BulkOptions, bulk_score

    pairs = list(itertools.islice(itertools.cycle(bulk_pairs(data_dir())), args.pairs))
    ceiling = Ceiling(args.model_dir).measure("bulk", pairs, tokenize=True, seconds=args.ceiling_seconds)
    rows = [("in-process ceiling, 1 thread", ceiling.pairs, args.ceiling_seconds, ceiling.pairs_per_s)]
    actor_counts = [int(n) for n in args.actors.split(",")]
    ray.init(num_cpus=max(actor_counts), object_store_memory=args.object_store_mb * 2**20)
    try:
        with tempfile.TemporaryDirectory(prefix="hashrank-bulk-bench-") as tmp:
            source = write_jsonl(pairs, Path(tmp) / "pairs.jsonl")
            for actors in actor_counts:
                options = BulkOptions(source, Path(tmp) / f"out-{actors}", args.model_dir, actors=actors,
                                      rows_per_call=args.rows_per_call)  # fmt: skip
                result = bulk_score(options)
                rows.append((f"bulk-score, {actors} actor(s) x 1 thread", len(pairs), result.seconds,
                             len(pairs) / result.seconds))  # fmt: skip
    finally:
        ray.shutdown()
    print("| run | pairs | seconds | pairs/s | x ceiling (1 thread) |")
    print("|---|---|---|---|---|")
    for name, n, seconds, rate in rows:
        print(f"| {name} | {n:,} | {seconds:.1f} | {rate:,.0f} | {rate / ceiling.pairs_per_s:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
