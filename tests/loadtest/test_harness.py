"""The benchmark harness pieces: workload builders, the load generator's HTTP client and statistics, the
report. Functional only: nothing here asserts a time or a throughput (timed tests are flaky here)."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path

import orjson
import pytest

from app.modeling.tokenizer import PairTokenizer
from loadtest import report
from loadtest.ceiling import batch_rows, parse_variant
from loadtest.loadgen import Connection, check_body, parse_metrics, percentile, run_cell, summarize
from loadtest.workloads import MIX_WEIGHTS, Request, Workload, build_workloads, load_sts_pairs, load_wikiqa


@pytest.fixture(scope="module")
def workloads(data_dir: Path) -> dict[str, Workload]:
    return build_workloads(data_dir, n=40)


def test_ceiling_batches_are_homogeneous_but_come_in_mixed_order(workloads: dict[str, Workload]) -> None:
    """Each ceiling batch is cut from the length order, but a time window over the first batches must see the
    workload's whole length mix: run in length order, a short window measured only the shortest pairs."""
    tokenizer = PairTokenizer.from_dir(Path(__file__).resolve().parents[2] / "models" / "rerank-hash-nano", 256)
    encoded = tokenizer.encode_pairs(workloads["rank100"].all_pairs())
    rows = batch_rows(encoded, sort=True)
    assert sorted(i for r in rows for i in r) == list(range(len(encoded)))
    lengths = [[len(encoded[i]) for i in r] for r in rows]
    spans = sorted((min(b), max(b)) for b in lengths)  # cut from the length order: the spans do not overlap
    assert all(hi <= next_lo for (_, hi), (next_lo, _) in zip(spans, spans[1:], strict=False))
    mean = lambda batches: sum(map(sum, batches)) / sum(map(len, batches))  # noqa: E731
    assert abs(mean(lengths[: len(lengths) // 4]) - mean(lengths)) < 0.2 * mean(lengths)
    assert lengths != sorted(lengths, key=max)


def test_data_loaders_read_every_row(data_dir: Path) -> None:
    sts = load_sts_pairs(data_dir)
    assert len(sts) == 1379  # STS-B test, rows with trailing source columns included
    assert all(a and b for a, b in sts)
    wikiqa = load_wikiqa(data_dir)
    assert len(wikiqa) == 633 and sum(len(c) for _, c in wikiqa) == 6165


def test_workload_shapes(workloads: dict[str, Workload]) -> None:
    assert set(workloads) == {"score1", "score32", "rank20", "rank100", "mix"}
    expected = {"score1": ("/score", 1), "score32": ("/score", 32), "rank20": ("/rank", 20), "rank100": ("/rank", 100)}
    for name, (path, pairs) in expected.items():
        requests = workloads[name].requests
        assert len(requests) == 40
        assert {r.path for r in requests} == {path} and {r.pairs for r in requests} == {pairs}
        assert len(workloads[name].all_pairs()) == 40 * pairs
    rank = orjson.loads(workloads["rank20"].requests[0].body)
    assert len(rank["documents"]) == len(set(rank["documents"])) == 20  # pooled without repeats
    assert {r.path for r in workloads["mix"].requests} == {"/score", "/rank"}
    assert set(MIX_WEIGHTS) <= set(workloads)


def test_workloads_are_deterministic(data_dir: Path, workloads: dict[str, Workload]) -> None:
    again = build_workloads(data_dir, n=40)
    assert [r.body for r in again["mix"].requests] == [r.body for r in workloads["mix"].requests]


def test_percentile_and_summary() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50.0, 95.0, 99.0)
    assert percentile([], 50) == 0.0
    cell = summarize("rank20", 8, 2.0, [(0.010, 20), (0.030, 20)], {"429": 1})
    assert (cell.requests, cell.rps, cell.pairs_per_s, cell.p50_ms, cell.p99_ms) == (2, 1.0, 20.0, 10.0, 30.0)
    assert cell.errors == {"429": 1}


def test_check_body_counts_scores() -> None:
    check_body(Request("/score", b"", 2), b'{"scores": [0.1, 0.2]}')
    check_body(Request("/rank", b"", 1), b'{"results": [{"index": 0, "relevance_score": 0.5}]}')
    with pytest.raises(AssertionError):
        check_body(Request("/score", b"", 3), b'{"scores": [0.1]}')


def test_parse_metrics_sums_label_sets() -> None:
    text = (
        "# HELP hashrank_batch_size_pairs Pairs per forward pass.\n"
        'hashrank_batch_size_pairs_sum{model="a"} 10.0\n'
        'hashrank_batch_size_pairs_sum{model="b"} 5.0\n'
        'hashrank_batch_size_pairs_count{model="a"} 2.0\n'
    )
    parsed = parse_metrics(text)
    assert parsed["hashrank_batch_size_pairs_sum"] == 15.0
    assert parsed["hashrank_batch_size_pairs_count"] == 2.0


def test_parse_variant() -> None:
    assert parse_variant("onnx") == ("onnx", True, False)
    assert parse_variant("onnx-int8:unsorted") == ("onnx-int8", False, False)
    assert parse_variant("onnx:tokenize") == ("onnx", True, True)


async def _fake_server(chunked: bool) -> tuple[asyncio.Server, int]:
    """A keep-alive HTTP/1.1 server answering every request with one score per posted pair."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.lower().split(b"\r\n")
                length = int(next(ln.split(b":")[1] for ln in lines if ln.startswith(b"content-length")))
                doc = orjson.loads(await reader.readexactly(length)) if length else {}
                body = orjson.dumps({"scores": [0.5] * len(doc.get("pairs", []))})
                if chunked:
                    half = len(body) // 2
                    chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (body[:half], body[half:]))
                    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize("chunked", [False, True])
async def test_connection_reads_both_body_framings(chunked: bool) -> None:
    server, port = await _fake_server(chunked)
    async with server:
        conn = Connection("127.0.0.1", port)
        for _ in range(3):  # the same keep-alive connection
            status, body = await conn.request(Request("/score", b'{"pairs": [["a", "b"], ["c", "d"]]}', 2))
            assert status == 200 and orjson.loads(body) == {"scores": [0.5, 0.5]}
        await conn.close()


async def test_run_cell_against_fake_server(workloads: dict[str, Workload]) -> None:
    server, port = await _fake_server(False)
    async with server:
        cell = await run_cell(f"http://127.0.0.1:{port}", workloads["score32"], 4, warmup=0.05, seconds=0.2)
    assert cell.requests >= 8 and not cell.errors  # at least 2 x concurrency, by construction of the window
    assert cell.pairs_per_s == pytest.approx(cell.rps * 32, rel=0.01)
    assert cell.server_metrics == {}  # the fake has no /metrics


def _fake_result() -> dict:
    cells = []
    for server, scale in (("ours-1w", 3.0), ("naive", 1.0), ("ours-2w", 5.4)):
        for workload in ("rank20", "rank100", "score1"):
            for conc in (1, 8, 32):
                cells.append(
                    summarize(workload, conc, 5.0, [(0.008 * conc, 20)] * int(10 * scale), {}).__dict__
                    | {"server": server}
                )
    cells[0]["server_metrics"] = {
        "hashrank_batch_size_pairs_sum": 200.0,
        "hashrank_batch_size_pairs_count": 10.0,
        "hashrank_batch_padded_tokens_sum": 8000.0,
        "hashrank_batch_tokens_total": 6000.0,
        "hashrank_inference_duration_seconds_sum": 4.0,
        "wall_seconds": 5.0,
    }
    ceiling = [
        {"workload": w, "backend": b, "sorted": s, "tokenize": False, "pairs": 100, "pairs_per_s": 100.0 * (1 + s),
         "mean_padded_len": 30.0, "model": "m"}
        for w in ("rank20", "rank100", "score1", "score32") for b in ("onnx", "onnx-int8") for s in (True, False)
    ]  # fmt: skip
    worker = {"role": "worker", "pid": 2, "rss_mb": 150.0, "peak_rss_mb": 160.0}
    return {
        "date": "2026-11-23 19:00 UTC",
        "wall_seconds": 300.0,
        "env": {"cpu": "Test CPU", "cores": 2, "simd": ["avx2"], "versions": {"python": "3.11"}, "commit": "abc",
                "loadavg_start": [0.1, 0, 0], "loadavg_end": [0.2, 0, 0]},
        "config": {"backend": "onnx", "server_cpus": "0", "client_cpus": "1", "all_cpus": "0,1", "warmup": 1.5,
                   "seconds": 5.0},
        "models": {"score": "models/sts-hash-nano", "rank": "models/rerank-hash-nano"},
        "cells": cells,
        "ceiling_start": ceiling,
        "ceiling_end": copy.deepcopy(ceiling),
        "peers": [{"peer": "cross-encoder-torch", "workload": "rank20", "pairs_per_s": 240.0, "requests_per_s": 12.0},
                  {"peer": "cross-encoder-torch", "workload": "rank100", "pairs_per_s": 500.0, "requests_per_s": 5.0},
                  {"peer": "cross-encoder-onnx-int8", "workload": "rank100", "pairs_per_s": 750.0,
                   "requests_per_s": 7.5}],
        "footprint": {
            "ours-1w": {"ready_seconds": 1.2, "processes": [worker]},
            "ours-2w": {"ready_seconds": 2.0, "processes": [{**worker, "role": "supervisor"}, worker, worker]},
        },
    }  # fmt: skip


def test_report_tables_and_verdicts(tmp_path: Path) -> None:
    result = _fake_result()
    md, png = report.write_report(result, tmp_path, "run")
    text = md.read_text()
    assert png is None or png.stat().st_size > 0  # the plot needs matplotlib, the tables do not
    verdicts = {t: v for t, _, _, v in report.targets(result)}
    assert verdicts["rank20 c=32 >= 2x naive"] == "met"  # 3.0x
    assert verdicts["2 workers / 1 worker, rank100 c=32 >= 1.7x"] == "met"  # 1.8x
    assert verdicts["rank20 c=1 p50 <= 1.2x its compute floor"] == "met"  # 8 ms against 100 ms
    assert verdicts["rank20 c=1 over HTTP ahead of cross-encoder-torch in-process"] == "**missed**"  # 120 vs 240
    assert verdicts["ours-1w: peak RSS per worker <= 200 MB"] == "met"
    assert "| rank20 | 1 | 6.0 | 120 | 8.0 |" in text  # req/s, pairs/s, p50 of the first cell
    assert "| 20.0 | 25% | 80% | 50 |" in text  # batch pairs, padding, ORT busy, ORT pairs/s
    assert "3.4k / 4.3k" in text  # the anchors sit next to this run's figures
    assert "| 500 / 750 (1qx100, in-process) | onnx-int8/torch 1.50x |" in text
    # With the lone-request floor measured, the latency target compares against it (10 ms: 8 ms is 0.80x).
    result["lone_floor"] = [{"workload": "rank20", "backend": "onnx", "lone_p50_ms": 10.0, "lone_p90_ms": 12.0}]
    (row,) = [t for t in report.targets(result) if t[0] == "rank20 c=1 p50 <= 1.2x its compute floor"]
    assert "compute floor 10.0 ms (the request alone, in process)" in row[1] and row[2] == "0.80x"
    assert json.loads(json.dumps(result)) == result  # the raw file round-trips


def test_profile_attributes_stacks_to_leaf_stage(tmp_path: Path) -> None:
    from loadtest.profile import stage_of, summarize

    root = "run (uvicorn/main.py:1);serve (uvicorn/server.py:2)"
    assert stage_of(
        f"{root};score (app/reranker.py:3);run (onnxruntime/capi/onnxruntime_inference_collection.py:4)"
    ) == ("ort (InferenceSession.run)")
    assert stage_of(f"{root};validate_python (pydantic/type_adapter.py:5)") == "validation (pydantic/fastapi)"
    assert stage_of("main (somewhere.py:1)") == "other"
    raw = tmp_path / "raw.txt"
    raw.write_text(f"{root};run (onnxruntime/capi/onnxruntime_inference_collection.py:4) 3\n{root} 1\n")
    assert "| ort (InferenceSession.run) | 75% |" in summarize(raw)


def test_tune_variant_parsing() -> None:
    from loadtest.tune import parse_variant as tune_variant

    assert tune_variant("base:") == ("base", {})
    assert tune_variant("w0:HASHRANK_MAX_WAIT_MS=0,HASHRANK_THREADS=unset") == (
        "w0",
        {"HASHRANK_MAX_WAIT_MS": "0", "HASHRANK_THREADS": "unset"},
    )


def test_cross_encoder_peer_scores_what_our_model_scores(workloads: dict[str, Workload]) -> None:
    """The bench's in-process peer loads the shipped model directory and runs its requests (torch here; the
    ONNX backend needs the bench's own virtualenv, requirements/peers-st.txt)."""
    from app.scorer import Scorer
    from loadtest.peers import cross_encoder_rate, load_cross_encoder

    model_dir = Path(__file__).resolve().parents[2] / "models" / "rerank-hash-nano"
    requests = workloads["rank20"].request_pairs()[:3]
    peer = load_cross_encoder(model_dir, "torch")
    ours = Scorer.load(model_dir, "onnx", max_length=512)
    theirs = peer.predict(requests[0], show_progress_bar=False)
    assert theirs == pytest.approx(ours.score(requests[0]), abs=1e-5)
    rate = cross_encoder_rate(peer, requests, seconds=0.2)
    assert rate["pairs_per_s"] > 0 and rate["requests_per_s"] > 0


def test_lone_request_floor_runs_each_request_as_one_batch(workloads: dict[str, Workload]) -> None:
    from loadtest.ceiling import Ceiling

    ceiling = Ceiling(Path(__file__).resolve().parents[2] / "models" / "rerank-hash-nano")
    floor = ceiling.lone_request_ms(workloads["rank20"].request_pairs()[:3], backend="onnx-int8", seconds=0.2)
    assert floor["requests"] > 0 and 0 < floor["lone_p50_ms"] <= floor["lone_p90_ms"]
