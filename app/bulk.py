"""Bulk scoring with Ray Data: a JSONL or Parquet file (or directory) of pairs in, the same rows plus a `score`
column out, scored by a pool of actors that each load the model once.

Every actor runs the one synchronous scoring path, `Scorer.score` (the one `hashrank score` runs): each Ray batch
of rows is tokenized, sorted by length and cut into forward passes of `batch_size` pairs, so padding stays as low
as in the CLI and the server's length bucketing. fp32 scores do not depend on batch-mates or padding (checked by
tests/test_bulk.py against `hashrank score` on 20,000+ pairs), so the actor count and Ray's batch boundaries do not
change a score. Ray is imported here only: the serving install has no ray (`pip install hashrank[ray]`).

    >>> bulk_score(BulkOptions(Path("pairs.jsonl"), Path("scored"), Path("models/sts-hash-nano"), actors=2))
    BulkResult(seconds=..., actors=2)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import orjson
import ray
from ray.data.block import BlockAccessor
from ray.data.datasource import BlockBasedFileDatasink

from app.commands.score import FIELD_PAIRS
from app.errors import InvalidInput
from app.modeling.tokenizer import Truncation
from app.runtime.base import Backend
from app.scorer import Scorer

if TYPE_CHECKING:
    import pyarrow as pa

Format = Literal["jsonl", "parquet"]
SCORE_COLUMN = "score"


@dataclass(frozen=True)
class BulkOptions:
    input: Path | str  # a file or a directory of them; any filesystem Ray Data reads (s3://... on a cluster)
    output: Path | str  # a directory: Ray writes one file per block, as every Ray Data sink does
    model: Path  # must exist at this path on every node (the shipped models/ are in the image and the wheel's checkout)
    backend: Backend = "onnx"
    actors: int = 1  # actors in the pool, each with its own model session
    threads: int = 1  # intra-op threads per actor, and the CPUs each actor reserves
    rows_per_call: int = 4096  # rows handed to an actor at once; more rows give length sorting more to choose from
    batch_size: int = 32  # pairs per forward pass, as `hashrank score --batch-size`
    max_length: int | None = None
    raw: bool = False
    truncation: Truncation = "longest_first"
    input_format: Format | None = None  # None: from the input's suffix
    output_format: Format | None = None  # None: as the input
    ray_init: dict[str, object] = field(default_factory=dict)  # ray.init() keywords (address, num_cpus, ...)


@dataclass(frozen=True)
class BulkResult:
    seconds: float  # reading, scoring and writing; ray.init() and actor start-up included
    actors: int


class ScoreBatch:
    """A Ray Data actor: loads the model once, then scores whole Arrow batches."""

    def __init__(self, options: BulkOptions, first: str, second: str) -> None:
        o = options
        self.scorer = Scorer.load(o.model, o.backend, threads=o.threads, max_length=o.max_length)
        self.options = options
        self.columns = (first, second)

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        first, second = (batch.column(name).to_pylist() for name in self.columns)
        o = self.options
        scores = self.scorer.score(list(zip(first, second, strict=True)), raw=o.raw, truncation=o.truncation,
                                   batch_size=o.batch_size)  # fmt: skip
        return batch.append_column(SCORE_COLUMN, pa.array(scores, type=pa.float64()))


def bulk_score(options: BulkOptions) -> BulkResult:
    """Score every row of options.input into options.output; starts a local Ray unless one is running or
    options.ray_init names an address."""
    started = time.perf_counter()
    if not ray.is_initialized():
        ray.init(**options.ray_init)  # type: ignore[arg-type]
    in_format = options.input_format or format_of(options.input)
    dataset = _read(options.input, in_format)
    first, second = pair_columns(dataset.columns())
    scored = dataset.map_batches(
        ScoreBatch,
        fn_constructor_kwargs={"options": options, "first": first, "second": second},
        batch_format="pyarrow",
        batch_size=options.rows_per_call,
        compute=ray.data.ActorPoolStrategy(size=options.actors),
        num_cpus=options.threads,
        # The tokenizer's Rust pool would otherwise take every core of the node in each actor.
        runtime_env={"env_vars": {"RAYON_NUM_THREADS": str(options.threads), "OMP_NUM_THREADS": str(options.threads)}},
    )
    _write(scored, str(options.output), options.output_format or in_format)
    return BulkResult(seconds=time.perf_counter() - started, actors=options.actors)


def pair_columns(columns: list[str]) -> tuple[str, str]:
    """The text columns, spelled as `hashrank score` accepts them: ("a", "b") or ("query", "document")."""
    for first, second in FIELD_PAIRS:
        if first in columns and second in columns:
            if SCORE_COLUMN in columns:
                raise InvalidInput(f"the input already has a {SCORE_COLUMN!r} column; drop or rename it")
            return first, second
    raise InvalidInput(f"the input needs columns 'a' and 'b' (or 'query' and 'document'), got {sorted(columns)}")


def format_of(path: Path | str) -> Format:
    name = str(path).rstrip("/")
    if name.endswith(".parquet") or (Path(name).is_dir() and any(Path(name).glob("*.parquet"))):
        return "parquet"
    return "jsonl"


# Reading and writing reserve no CPU: the actors hold actors x threads CPUs, which is every CPU when the pool is
# sized to the machine, and a read task waiting for a free CPU would then never start (Ray Data deadlocks).
# Parsing and writing are cheap next to scoring.
_IO = {"num_cpus": 0}


def _read(path: Path | str, fmt: Format) -> ray.data.Dataset:
    if fmt == "parquet":
        return ray.data.read_parquet(str(path), ray_remote_args=_IO)
    return ray.data.read_json(str(path), lines=True, ray_remote_args=_IO)


def _write(dataset: ray.data.Dataset, path: str, fmt: Format) -> None:
    if fmt == "parquet":
        dataset.write_parquet(path, ray_remote_args=_IO)
    else:
        dataset.write_datasink(JsonLines(path, file_format="jsonl"), ray_remote_args=_IO)


class JsonLines(BlockBasedFileDatasink):
    """One JSON object per row, floats written to round-trip (Ray's write_json goes through pandas, which keeps
    10 significant digits: a score would no longer equal `hashrank score`'s)."""

    def write_block_to_file(self, block: BlockAccessor, file: pa.NativeFile) -> None:
        file.write(b"".join(orjson.dumps(row) + b"\n" for row in block.to_arrow().to_pylist()))
