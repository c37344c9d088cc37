"""The batcher behind the real model: coalescing read from /metrics, 429, 504, disconnects, readiness."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from app.settings import Settings
from tests.api.conftest import STS, assert_error, metric, running

pytestmark = pytest.mark.asyncio(loop_scope="module")

LONG = "word " * 400  # cut to max_length (256): every pair costs a full forward pass


async def scrape(client: httpx.AsyncClient, name: str, **labels: str) -> float:
    return metric((await client.get("/metrics")).text, name, model=STS, **labels)


async def test_concurrent_one_pair_requests_are_coalesced(client: httpx.AsyncClient) -> None:
    passes = await scrape(client, "hashrank_inference_duration_seconds_count")
    pairs = await scrape(client, "hashrank_pairs_scored_total")
    responses = await asyncio.gather(
        *(client.post("/score", json={"pairs": [[f"query {i}", f"document number {i}"]]}) for i in range(64))
    )
    assert [r.status_code for r in responses] == [200] * 64
    passes = await scrape(client, "hashrank_inference_duration_seconds_count") - passes
    assert await scrape(client, "hashrank_pairs_scored_total") - pairs == 64
    # 64 requests, batches of up to 32: a couple of passes, certainly far fewer than 64.
    assert passes <= 8, f"64 one-pair requests took {passes} forward passes"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def slow(make_settings: Callable[..., Settings]) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """One pair per forward pass and a short queue: work piles up on demand."""
    settings = make_settings(
        max_batch_pairs=1, max_wait_ms=0, max_queue_pairs=64, max_pairs_per_request=32, warmup=False
    )
    async with running(settings) as app_client:
        yield app_client


async def until_queued(client: httpx.AsyncClient, at_least: float = 1) -> None:
    for _ in range(500):
        if await scrape(client, "hashrank_queue_depth_pairs") >= at_least:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("nothing was ever queued")


def hog(client: httpx.AsyncClient) -> asyncio.Task[httpx.Response]:
    """32 full-length pairs, one forward pass each: keeps the worker busy for a while."""
    return asyncio.create_task(client.post("/score", json={"pairs": [["q", LONG]] * 32}))


async def test_full_queue_is_429_with_retry_after(slow: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = slow
    rejected = await scrape(client, "hashrank_requests_rejected_total")
    pairs = [["q", "word " * 100]] * 32
    responses = await asyncio.gather(*(client.post("/score", json={"pairs": pairs}) for _ in range(5)))
    statuses = sorted(r.status_code for r in responses)
    assert 429 in statuses and 200 in statuses, statuses
    for r in responses:
        if r.status_code == 429:
            assert_error(r, 429, "overloaded")
            assert int(r.headers["retry-after"]) >= 1
    assert await scrape(client, "hashrank_requests_rejected_total") - rejected == statuses.count(429)


async def test_a_deadline_behind_the_queue_is_refused_at_once_and_never_scored(
    slow: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, client = slow
    scored = await scrape(client, "hashrank_pairs_scored_total")
    busy = hog(client)
    await until_queued(client)
    late = await client.post("/score", json={"pairs": [["q", "d"]] * 3, "timeout_ms": 1})
    # Two honest answers, both at once: the millisecond is gone before admission (504), or the queue ahead
    # would outlast it at the measured rate (429 with Retry-After). Which one depends on the parse time.
    if late.status_code == 504:
        assert_error(late, 504, "timeout")
    else:
        assert_error(late, 429, "overloaded")
        assert "before the request's deadline" in late.json()["error"]["message"]
        assert int(late.headers["retry-after"]) >= 1
    assert (await busy).status_code == 200
    assert await scrape(client, "hashrank_pairs_scored_total") - scored == 32  # the hog's pairs, none of late's


async def test_disconnect_drops_queued_work(slow: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = slow
    dropped = await scrape(client, "hashrank_pairs_dropped_total", reason="disconnect")
    busy = hog(client)
    await until_queued(client)

    # A raw ASGI request whose client hangs up once its pairs are queued.
    body = json.dumps({"pairs": [["q", LONG]] * 20}).encode()
    hang_up = asyncio.Event()
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await hang_up.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/score",
        "raw_path": b"/score",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1),
        "server": ("hashrank", 80),
        "state": {},
    }
    tokenized = await scrape(client, "hashrank_tokenize_duration_seconds_count")
    request = asyncio.create_task(app(scope, receive, send))
    # Tokenized means queued: the handler submits in the same step.
    for _ in range(1000):
        if await scrape(client, "hashrank_tokenize_duration_seconds_count") > tokenized:
            break
        await asyncio.sleep(0.005)
    hang_up.set()
    await asyncio.wait_for(request, 10)
    assert sent[0]["status"] == 499
    assert (await busy).status_code == 200
    gone = await scrape(client, "hashrank_pairs_dropped_total", reason="disconnect") - dropped
    assert 1 <= gone <= 20
    scored_after = await scrape(client, "hashrank_queue_depth_pairs")
    assert scored_after == 0


async def test_ready_only_after_warm_up(make_settings: Callable[..., Settings]) -> None:
    async with running(make_settings(warmup=True), wait_ready=False) as (app, client):
        seen: list[int] = []
        while not seen or seen[-1] != 200:
            r = await client.get("/health/ready")
            seen.append(r.status_code)
            if r.status_code == 503:
                assert_error(r, 503, "not_ready")
                assert all(not m.warmed for m in app.state.reranker.models.values()) or not app.state.reranker.accepting
                early = await client.post("/score", json={"pairs": [["a", "b"]]})
                if early.status_code == 503:
                    assert_error(early, 503, "not_ready")
            assert len(seen) < 5000, "never became ready"
            await asyncio.sleep(0.005)
        assert seen[0] == 503, "ready before the warm-up ran"
        assert all(m.warmed for m in app.state.reranker.models.values())
        assert (await client.get("/health/live")).status_code == 200
        assert (await client.post("/score", json={"pairs": [["a", "b"]]})).status_code == 200
    # After shutdown the app drains and reports not ready.
    assert not app.state.reranker.ready


async def test_two_models_route_by_name(make_settings: Callable[..., Settings]) -> None:
    directory = make_settings().models[STS]
    settings = make_settings(models={"sts": directory, "rerank-small": directory}, warmup=False)
    async with running(settings) as (_, client):
        names = [m["name"] for m in (await client.get("/models")).json()["models"]]
        assert names == ["sts", "rerank-small"]
        assert (await client.post("/score", json={"pairs": [["a", "b"]]})).json()["model"] == "sts"
        assert (await client.post("/rank", json={"query": "a", "documents": ["b"]})).json()["model"] == "rerank-small"
        picked = await client.post("/score", json={"pairs": [["a", "b"]], "model": "rerank-small"})
        assert picked.json()["model"] == "rerank-small"
        text = (await client.get("/metrics")).text
        assert metric(text, "hashrank_pairs_scored_total", model="rerank-small") == 2
        assert metric(text, "hashrank_requests_total", route="/rank", status="200", model="rerank-small") == 1
