"""`hashrank score --model DIR < pairs.jsonl`: one {"score": x} line per {"a","b"} (or {"query","document"}) line.

$ echo '{"a": "A man is dancing.", "b": "A man dances."}' | hashrank score --model models/sts-hash-nano
{"score": 0.87...}
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from app.errors import InvalidInput, ModelLoadError
from app.runtime.base import Backend

# Accepted field spellings, first text then second; the second pair matches rerank-style data. `hashrank
# bulk-score` reads the same spellings as columns.
FIELD_PAIRS = (("a", "b"), ("query", "document"))


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "score",
        help="score JSON-lines pairs from stdin",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_scoring_arguments(parser)


def add_scoring_arguments(parser: argparse.ArgumentParser) -> None:
    """The model and scoring flags `hashrank score` and `hashrank bulk-score` share."""
    parser.add_argument("--model", type=Path, required=True, help="model directory")
    parser.add_argument("--backend", choices=["onnx", "torch"], default="onnx", help="inference backend")
    parser.add_argument("--int8", action="store_true", help="onnx backend: use model.int8.onnx")
    parser.add_argument("--raw-scores", action="store_true", help="print logits instead of sigmoid scores")
    parser.add_argument("--max-length", type=positive_int, help="tokens per pair (default: the model's)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="pairs per forward pass")
    parser.add_argument("--threads", type=positive_int, default=1, help="intra-op threads")
    parser.add_argument(
        "--truncation",
        choices=["longest_first", "only_second"],
        default="longest_first",
        help="only_second keeps the first text (the query) whole",
    )


def run(args: argparse.Namespace) -> int:
    from app.scorer import Scorer  # loads onnxruntime; keep --help fast

    backend = backend_of(args)
    pairs = read_pairs(sys.stdin)
    scorer = Scorer.load(args.model, backend, threads=args.threads, max_length=args.max_length)
    scores = scorer.score(pairs, raw=args.raw_scores, truncation=args.truncation, batch_size=args.batch_size)
    write_scores(scores.tolist(), sys.stdout)
    return 0


def backend_of(args: argparse.Namespace) -> Backend:
    if args.int8 and args.backend != "onnx":
        raise ModelLoadError("--int8 needs --backend onnx (the int8 model is an ONNX graph)")
    backend: Backend = "onnx-int8" if args.int8 else args.backend
    return backend


def read_pairs(lines: Iterable[str]) -> list[tuple[str, str]]:
    """Parse every line first, so a bad line fails the run before any score is printed."""
    pairs = []
    for number, line in enumerate(lines, start=1):
        if line.strip():  # blank lines (a trailing newline, spacing) carry no pair
            pairs.append(_parse_line(line, number))
    return pairs


def _parse_line(line: str, number: int) -> tuple[str, str]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"stdin line {number}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(obj, dict):
        raise InvalidInput(f'stdin line {number}: expected a JSON object like {{"a": ..., "b": ...}}')
    for first, second in FIELD_PAIRS:
        if first in obj and second in obj:
            a, b = obj[first], obj[second]
            if not isinstance(a, str) or not isinstance(b, str):
                raise InvalidInput(f"stdin line {number}: {first!r} and {second!r} must be strings")
            return a, b
    raise InvalidInput(f"stdin line {number}: needs keys 'a' and 'b' (or 'query' and 'document'), got {sorted(obj)}")


def write_scores(scores: list[float], out: TextIO) -> None:
    out.writelines(json.dumps({"score": s}) + "\n" for s in scores)
    out.flush()


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
