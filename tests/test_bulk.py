"""`hashrank bulk-score` (Ray Data) against `hashrank score` on the same file: every fp32 score equal, bit for bit.

Both commands run as subprocesses, as a user runs them; bulk-score starts its own local Ray (2 CPUs, a 100 MB
object store), which shuts down when the process exits.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.errors import InvalidInput
from loadtest.bulk_bench import bulk_pairs
from tests.conftest import ROOT
from tests.test_cli import ENV, hashrank, scores_of

pytestmark = pytest.mark.slow  # a local Ray takes ~20 s to start on a busy 2-core machine

RAY_LOCAL = ("--num-cpus", "2", "--object-store-mb", "100")


def read_output(directory: Path, suffix: str) -> list[dict[str, Any]]:
    files = sorted(directory.glob(f"*.{suffix}"))
    assert files, f"no .{suffix} file in {directory}"
    if suffix == "parquet":
        return [row for f in files for row in pq.read_table(f).to_pylist()]
    return [json.loads(line) for f in files for line in f.read_text(encoding="utf-8").splitlines()]


def test_bulk_score_equals_hashrank_score_on_21k_pairs(sts_model_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    pairs = bulk_pairs(data_dir)
    assert len(pairs) >= 20_000
    source = tmp_path / "pairs.jsonl"
    rows = [{"id": i, "a": a, "b": b} for i, (a, b) in enumerate(pairs)]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")

    expected = scores_of(hashrank("score", "--model", str(sts_model_dir), stdin=source))
    out = tmp_path / "scored"
    bulk = hashrank(
        "bulk-score", str(source), "--output", str(out), "--model", str(sts_model_dir),
        "--actors", "2", "--threads", "1", "--rows-per-call", "2048", *RAY_LOCAL,
    )  # fmt: skip
    assert bulk.returncode == 0, bulk.stderr[-3000:]

    scored = read_output(out, "jsonl")
    assert sorted(row["id"] for row in scored) == list(range(len(rows)))  # every row once
    for row in scored:
        i = row["id"]
        assert (row["a"], row["b"]) == (rows[i]["a"], rows[i]["b"])  # the input row, unchanged
        assert row["score"] == expected[i], f"row {i}: bulk {row['score']!r} != score {expected[i]!r}"


def test_bulk_score_parquet_keeps_columns_and_reads_query_document(sts_model_dir: Path, tmp_path: Path) -> None:
    pairs = [("how long do cats sleep", f"Cats sleep {h} hours a day.") for h in range(300)]
    table = pa.table({"query": [q for q, _ in pairs], "document": [d for _, d in pairs], "doc_id": list(range(300))})
    pq.write_table(table, tmp_path / "pairs.parquet")
    out = tmp_path / "scored"
    bulk = hashrank(
        "bulk-score", str(tmp_path / "pairs.parquet"), "--output", str(out), "--model", str(sts_model_dir),
        "--raw-scores", *RAY_LOCAL,
    )  # fmt: skip
    assert bulk.returncode == 0, bulk.stderr[-3000:]

    lines = tmp_path / "pairs.jsonl"
    lines.write_text("".join(json.dumps({"query": q, "document": d}) + "\n" for q, d in pairs), encoding="utf-8")
    expected = scores_of(hashrank("score", "--model", str(sts_model_dir), "--raw-scores", stdin=lines))
    scored = sorted(read_output(out, "parquet"), key=lambda row: int(row["doc_id"]))
    assert [set(row) for row in scored] == [{"query", "document", "doc_id", "score"}] * 300
    assert [row["score"] for row in scored] == expected.tolist()


def test_pair_columns_are_the_spellings_hashrank_score_reads() -> None:
    from app.bulk import pair_columns  # imports ray

    assert pair_columns(["id", "query", "document"]) == ("query", "document")
    assert pair_columns(["a", "b", "query", "document"]) == ("a", "b")
    with pytest.raises(InvalidInput, match="needs columns 'a' and 'b'"):
        pair_columns(["text", "other"])
    with pytest.raises(InvalidInput, match="already has a 'score' column"):
        pair_columns(["a", "b", "score"])


def test_the_cli_and_the_server_do_not_import_ray() -> None:
    code = (
        "import sys; from app.__main__ import build_parser; from app.main import create_app; build_parser(); "
        "create_app(); assert 'ray' not in sys.modules, 'ray imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=99)
    assert result.returncode == 0, result.stderr
