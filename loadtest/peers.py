"""Peers measured in the bench's run: sentence-transformers `CrossEncoder` in-process on the same model
directory and the same requests, one `predict` per request (a query with its candidates), as an application
that embeds the model instead of calling a service would do it.

    $ taskset -c 0 python -m loadtest.peers models/rerank-hash-nano --workload rank20 --seconds 3
    {"peer": "cross-encoder-torch", "workload": "rank20", "pairs_per_s": ..., "requests_per_s": ...}

`--backend onnx-int8` (or `onnx`) runs CrossEncoder's ONNX Runtime backend (optimum) on the model directory's
own exported file, the one our server serves; it needs sentence-transformers >= 4.1 with optimum, whose pins
clash with ours, so the bench runs it from its own virtualenv (requirements/peers-st.txt).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from loadtest.workloads import build_workloads, data_dir

# --backend -> the model file CrossEncoder's ONNX backend loads (None: torch).
ONNX_FILES = {"torch": None, "onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}


def load_cross_encoder(model_dir: Path, backend: str) -> Any:
    """CrossEncoder on one thread: torch, or ONNX Runtime on the directory's exported file."""
    import torch
    from sentence_transformers import CrossEncoder

    torch.set_num_threads(1)
    file_name = ONNX_FILES[backend]
    if file_name is None:
        return CrossEncoder(str(model_dir), trust_remote_code=True, device="cpu")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return CrossEncoder(
        str(model_dir),
        trust_remote_code=True,
        device="cpu",
        backend="onnx",
        model_kwargs={"file_name": file_name, "provider": "CPUExecutionProvider", "session_options": options},
    )


def cross_encoder_rate(model: Any, requests: list[list[tuple[str, str]]], seconds: float) -> dict[str, float]:
    """Pairs/s and requests/s of CrossEncoder.predict over the requests, cycled for `seconds`."""
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
    parser.add_argument("--backend", choices=sorted(ONNX_FILES), default="torch")
    args = parser.parse_args(argv)
    workloads = build_workloads(data_dir())
    model = load_cross_encoder(args.model_dir, args.backend)
    for name in args.workload:
        requests = workloads[name].request_pairs()
        rate = cross_encoder_rate(model, requests, args.seconds)
        print(json.dumps({"peer": f"cross-encoder-{args.backend}", "workload": name, **rate}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
