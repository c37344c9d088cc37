"""Health, info, models, OpenAPI and the metric names the issue lists."""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.api.conftest import STS, metric

pytestmark = pytest.mark.asyncio(loop_scope="module")

METRICS = [
    "hashrank_requests_total",
    "hashrank_request_duration_seconds_bucket",
    "hashrank_tokenize_duration_seconds_bucket",
    "hashrank_queue_wait_duration_seconds_bucket",
    "hashrank_inference_duration_seconds_bucket",
    "hashrank_batch_size_pairs_bucket",
    "hashrank_batch_padded_tokens_bucket",
    "hashrank_batch_padding_ratio_bucket",
    "hashrank_batch_tokens_total",
    "hashrank_queue_depth_pairs",
    "hashrank_requests_in_flight",
    "hashrank_pairs_scored_total",
    "hashrank_pairs_truncated_total",
    "hashrank_pairs_dropped_total",
    "hashrank_requests_rejected_total",
    "hashrank_batch_failures_total",
    "hashrank_model_info",
]


async def test_health(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health/live")).json() == {"status": "alive"}
    assert (await client.get("/health/ready")).json() == {"status": "ready"}
    assert (await client.get("/health")).json() == {"status": "ready"}


async def test_info_and_models(client: httpx.AsyncClient) -> None:
    info = (await client.get("/info")).json()
    assert info["name"] == "hashrank" and info["ready"] is True
    assert info["default_score_model"] == info["default_rank_model"] == STS
    assert info["limits"]["max_batch_pairs"] == 16 and info["limits"]["max_pairs_per_request"] == 1000
    (model,) = (await client.get("/models")).json()["models"]
    assert model["name"] == STS and model["backend"] == "onnx-int8" and model["max_length"] == 256
    assert 0 < model["parameters"] < 2_000_000 and model["ready"] is True
    assert info["models"] == [model]


async def test_metrics_exposition(client: httpx.AsyncClient) -> None:
    await client.post("/score", json={"pairs": [["a", "b"], ["c", "word " * 400]]})
    r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    names = {line.split("{")[0].split(" ")[0] for line in r.text.splitlines() if not line.startswith("#")}
    assert sorted(set(METRICS) - names) == []
    assert metric(r.text, "hashrank_model_info", model=STS, backend="onnx-int8") == 1
    assert metric(r.text, "hashrank_requests_total", route="/score", status="200", model=STS) >= 1
    assert metric(r.text, "hashrank_pairs_truncated_total", model=STS) >= 1
    padded = metric(r.text, "hashrank_batch_padded_tokens_sum", model=STS)
    real = metric(r.text, "hashrank_batch_tokens_total", model=STS)
    assert 0 < real <= padded


async def test_in_flight_is_labelled_by_route(client: httpx.AsyncClient) -> None:
    assert (await client.get("/no/such/path")).status_code == 404
    text = (await client.get("/metrics")).text
    # The scrape itself is the request in flight while the exposition renders.
    assert metric(text, "hashrank_requests_in_flight", route="/metrics") == 1
    assert metric(text, "hashrank_requests_in_flight", route="/score") == 0
    assert 'route="/no/such/path"' not in text and metric(text, "hashrank_requests_total", route="other") >= 1


async def test_openapi_documents_both_routes(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert {"/score", "/rank", "/health/ready", "/info", "/models", "/metrics"} <= set(spec["paths"])
    assert "429" in spec["paths"]["/score"]["post"]["responses"]
    assert (await client.get("/docs")).status_code == 200


async def test_the_access_log_writes_one_line_per_request_only_when_info_is_on(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="hashrank.access"):
        response = await client.get("/health/live", headers={"X-Request-ID": "trace-7"})
    lines = [r.getMessage() for r in caplog.records if r.name == "hashrank.access"]
    assert response.status_code == 200 and len(lines) == 1
    assert '"GET /health/live HTTP/1.1" 200' in lines[0] and lines[0].endswith("request_id=trace-7")

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hashrank.access"):  # HASHRANK_LOG_LEVEL=warning
        await client.get("/health/live")
    assert not [r for r in caplog.records if r.name == "hashrank.access"]
