"""The in-process ONNX Runtime ceiling: what one 1-thread session does with the same model file and pairs
when nothing else (HTTP, JSON, queues) is in the way.

Pairs are tokenized once, sorted by length and cut into batches of 32, then the padded batches are run
back to back, **in a fixed shuffled order**, for a fixed time. The shuffle matters: run in length order, a
3-second window covers only the shortest third of the batches and overstates pairs/s ~1.6x (the first
recorded runs did that). `tokenize=True` also counts encoding + padding in the loop (the ceiling of a server
that must tokenize, which ours must). `mean_padded_len` is over the batches the window actually ran.

    $ taskset -c 0 python -m loadtest.ceiling models/sts-hash-nano --workload score32 --variant onnx-int8
    {"workload": "score32", "backend": "onnx-int8", "sorted": true, "tokenize": false, "pairs_per_s": ...}

`--lone` measures something else: the latency floor of a request served alone. Each request's pairs are
encoded, padded and run as one batch, request after request; the median is what a lone request costs with
nothing else in the way. The throughput ceiling above is no such floor: its batches are cut from every
request's pairs sorted by length, which a request that arrives alone cannot have (its own documents vary
in length, so its batch pads more).

    $ taskset -c 0 python -m loadtest.ceiling models/rerank-hash-nano --workload rank20 --variant onnx-int8 --lone
    {"workload": "rank20", "backend": "onnx-int8", "lone_p50_ms": ..., "lone_p90_ms": ..., "requests": ...}
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import onnxruntime as ort

from app.modeling.config import ModelConfig
from app.modeling.tokenizer import EncodedPair, PairTokenizer
from loadtest.workloads import build_workloads, data_dir

BATCH = 32
FILES = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}


@dataclass
class CeilingResult:
    workload: str
    backend: str
    sorted: bool
    tokenize: bool
    pairs: int  # distinct pairs in the set
    pairs_per_s: float
    mean_padded_len: float  # mean padded length per pair: what padding costs


def session(model_dir: Path, backend: str) -> ort.InferenceSession:
    """A plain session: defaults (graph optimisation ALL) and one intra-op thread."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(model_dir / FILES[backend]), options, providers=["CPUExecutionProvider"])


def batch_rows(encoded: list[EncodedPair], sort: bool) -> list[list[int]]:
    """Pair indices of each batch of 32: cut from the length order (sort=True) or as given; the batches
    themselves come in a fixed shuffled order, so any prefix of them has the workload's length mix."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i])) if sort else list(range(len(encoded)))
    rows = [order[s : s + BATCH] for s in range(0, len(order), BATCH)]
    random.Random(0).shuffle(rows)
    return rows


class Ceiling:
    """One model directory: its tokenizer, a session per ONNX file, and encodings cached per workload."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = Path(model_dir)
        self.tokenizer = PairTokenizer.from_dir(self.model_dir, ModelConfig.load(self.model_dir).max_length)
        self._sessions: dict[str, ort.InferenceSession] = {}
        self._encoded: dict[str, list[EncodedPair]] = {}

    def measure(
        self,
        workload: str,
        pairs: list[tuple[str, str]],
        *,
        backend: str = "onnx",
        sort: bool = True,
        tokenize: bool = False,
        seconds: float = 3.0,
    ) -> CeilingResult:
        """Pairs/s of back-to-back batches cycling over `pairs` for `seconds` (after a short warm-up).

        With tokenize=True each batch's pairs are encoded and padded inside the timed loop (the batch
        membership still comes from the up-front sort, as a server's length bucketing would give).
        """
        tokenizer = self.tokenizer
        sess = self.session(backend)
        feeds = [i.name for i in sess.get_inputs()]
        if workload not in self._encoded:
            self._encoded[workload] = tokenizer.encode_pairs(pairs)
        encoded = self._encoded[workload]
        rows = batch_rows(encoded, sort)
        padded = [tokenizer.pad([encoded[i] for i in r]) for r in rows]

        def step(k: int) -> int:
            batch = tokenizer.pad(tokenizer.encode_pairs([pairs[i] for i in rows[k]])) if tokenize else padded[k]
            sess.run(["logits"], {name: getattr(batch, name) for name in feeds})
            return len(rows[k])

        for k in range(min(len(rows), 8)):  # warm-up: first-run allocations and kernel selection
            step(k)
        done, tokens, k, start = 0, 0, 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            done += step(k % len(rows))
            tokens += padded[k % len(rows)].input_ids.size
            k += 1
        elapsed = time.perf_counter() - start
        mean_len = tokens / done
        return CeilingResult(workload, backend, sort, tokenize, len(pairs), done / elapsed, round(mean_len, 1))

    def session(self, backend: str) -> ort.InferenceSession:
        if backend not in self._sessions:
            self._sessions[backend] = session(self.model_dir, backend)
        return self._sessions[backend]

    def lone_request_ms(
        self, requests: list[list[tuple[str, str]]], *, backend: str = "onnx", seconds: float = 3.0
    ) -> dict[str, float]:
        """p50/p90 ms of one request's pairs encoded, padded and run as one batch, cycling over the requests."""
        tokenizer, sess = self.tokenizer, self.session(backend)
        feeds = [i.name for i in sess.get_inputs()]

        def one(pairs: list[tuple[str, str]]) -> float:
            started = time.perf_counter()
            batch = tokenizer.pad(tokenizer.encode_pairs(pairs))
            sess.run(["logits"], {name: getattr(batch, name) for name in feeds})
            return (time.perf_counter() - started) * 1000

        for pairs in requests[:8]:  # warm-up
            one(pairs)
        times: list[float] = []
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            times.append(one(requests[len(times) % len(requests)]))
        times.sort()
        return {"lone_p50_ms": round(times[len(times) // 2], 3),
                "lone_p90_ms": round(times[int(len(times) * 0.9)], 3), "requests": len(times)}


def parse_variant(text: str) -> tuple[str, bool, bool]:
    """ "onnx", "onnx-int8:unsorted", "onnx:sorted:tokenize" -> (backend, sort, tokenize)."""
    backend, *flags = text.split(":")
    if backend not in FILES or not set(flags) <= {"sorted", "unsorted", "tokenize"}:
        raise argparse.ArgumentTypeError(f"bad variant {text!r}; e.g. onnx, onnx-int8:unsorted, onnx:tokenize")
    return backend, "unsorted" not in flags, "tokenize" in flags


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--workload", action="append", help="score1/score32/rank20/rank100/mix (repeatable)")
    parser.add_argument(
        "--variant", action="append", type=parse_variant, help="BACKEND[:unsorted][:tokenize], repeatable; default onnx"
    )
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--lone", action="store_true", help="the latency floor of a request served alone")
    args = parser.parse_args(argv)
    workloads = build_workloads(data_dir())
    ceiling = Ceiling(args.model_dir)
    if args.lone:
        for name in args.workload or ["rank20"]:
            for backend, _, _ in args.variant or [("onnx", True, False)]:
                floor = ceiling.lone_request_ms(workloads[name].request_pairs(), backend=backend, seconds=args.seconds)
                print(json.dumps({"workload": name, "backend": backend, **floor}), flush=True)
        return 0
    for name in args.workload or ["score32", "rank100"]:
        pairs = workloads[name].all_pairs()
        for backend, sort, tok in args.variant or [("onnx", True, False)]:
            result = ceiling.measure(name, pairs, backend=backend, sort=sort, tokenize=tok, seconds=args.seconds)
            print(json.dumps(asdict(result)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
