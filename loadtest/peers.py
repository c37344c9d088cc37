"""Peers measured in the bench's run: sentence-transformers `CrossEncoder` in-process on the same model
directory and the same requests, one `predict` per request (a query with its candidates), as an application
that embeds the model instead of calling a service would do it.

    $ taskset -c 0 python -m loadtest.peers models/rerank-hash-nano --workload rank20 --seconds 3
    {"peer": "cross-encoder-torch", "workload": "rank20", "pairs_per_s": ..., "requests_per_s": ...}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import orjson

from loadtest.workloads import build_workloads, data_dir


def cross_encoder_rate(model_dir: Path, requests: list[list[tuple[str, str]]], seconds: float) -> dict[str, float]:
    """Pairs/s and requests/s of CrossEncoder.predict (torch, 1 thread) over the requests, cycled for `seconds`."""
    import torch
    from sentence_transformers import CrossEncoder

    torch.set_num_threads(1)
    model = CrossEncoder(str(model_dir), trust_remote_code=True, device="cpu")
    model.predict(requests[0], batch_size=32, show_progress_bar=False)  # lazy initialisation off the clock
    pairs = done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        request = requests[done % len(requests)]
        model.predict(request, batch_size=32, show_progress_bar=False)
        pairs += len(request)
        done += 1
    elapsed = time.perf_counter() - started
    return {"pairs_per_s": round(pairs / elapsed, 1), "requests_per_s": round(done / elapsed, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--workload", action="append", required=True, help="rank20, rank100, score32, ...")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    workloads = build_workloads(data_dir())
    for name in args.workload:
        requests = [body_pairs(orjson.loads(request.body)) for request in workloads[name].requests]
        rate = cross_encoder_rate(args.model_dir, requests, args.seconds)
        print(json.dumps({"peer": "cross-encoder-torch", "workload": name, **rate}), flush=True)
    return 0


def body_pairs(body: dict) -> list[tuple[str, str]]:
    """The pairs one request body asks to score: /rank's query x documents, or /score's pairs."""
    if "query" in body:
        return [(body["query"], doc) for doc in body["documents"]]
    return [(a, b) for a, b in body["pairs"]]


if __name__ == "__main__":
    sys.exit(main())
