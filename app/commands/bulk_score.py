"""`hashrank bulk-score PAIRS --output DIR --model DIR [--actors N] [--threads T] [--address ray://...]`: score a
large JSONL or Parquet file of pairs with Ray Data; DIR gets the same rows plus a `score` column.

The same command runs on a laptop (a local Ray is started with `ray.init()`) and on a Ray cluster (`--address`).
Needs the ray extra: `pip install "hashrank[ray]"`.

$ hashrank bulk-score pairs.jsonl --output scored/ --model models/sts-hash-nano --actors 2
scored pairs.jsonl into scored/ in 14.2 s with 2 actors x 1 thread
"""

from __future__ import annotations

import argparse
import sys

from app.commands.score import add_scoring_arguments, backend_of, positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "bulk-score",
        help="score a large JSONL/Parquet pair file with Ray Data (the [ray] extra)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", help="JSONL or Parquet file or directory with columns a,b (or query,document)")
    parser.add_argument("--output", required=True, help="output directory (one file per Ray block)")
    add_scoring_arguments(parser)  # --threads is per actor
    parser.add_argument("--actors", type=positive_int, default=1, help="actors, each loading the model once")
    parser.add_argument("--rows-per-call", type=positive_int, default=4096, help="rows an actor scores per call")
    parser.add_argument("--input-format", choices=["jsonl", "parquet"], help="default: from the input's name")
    parser.add_argument("--output-format", choices=["jsonl", "parquet"], help="default: the input's format")
    parser.add_argument("--address", help="Ray cluster to join (ray://host:10001 or auto); default: start a local Ray")
    local = parser.add_argument_group("local Ray only (ignored with --address)")
    local.add_argument("--num-cpus", type=positive_int, help="CPUs the local Ray may use (default: all)")
    local.add_argument("--object-store-mb", type=positive_int, help="object store size (default: Ray's, 30%% of RAM)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    try:
        from app.bulk import BulkOptions, bulk_score  # imports ray
    except ImportError as exc:
        print(f"error: bulk-score needs Ray Data: pip install 'hashrank[ray]' ({exc})", file=sys.stderr)
        return 2
    ray_init: dict[str, object] = {"address": args.address}
    if args.address is None:
        if args.num_cpus:
            ray_init["num_cpus"] = args.num_cpus
        if args.object_store_mb:
            ray_init["object_store_memory"] = args.object_store_mb * 2**20
    options = BulkOptions(
        input=args.input,
        output=args.output,
        model=Path(args.model),
        backend=backend_of(args),
        actors=args.actors,
        threads=args.threads,
        rows_per_call=args.rows_per_call,
        batch_size=args.batch_size,
        max_length=args.max_length,
        raw=args.raw_scores,
        truncation=args.truncation,
        input_format=args.input_format,
        output_format=args.output_format,
        ray_init=ray_init,
    )
    result = bulk_score(options)
    print(
        f"scored {args.input} into {args.output} in {result.seconds:.1f} s with {args.actors} actors x "
        f"{args.threads} thread{'s' if args.threads > 1 else ''}"
    )
    return 0
