"""A real uvicorn on 127.0.0.1 (a free port), real sockets: the same answers, coalescing, disconnects."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import httpx
import pytest
import uvicorn

from app.main import create_app
from app.settings import Settings
from tests.api.conftest import STS, assert_error, metric

LONG = "word " * 400


@pytest.mark.asyncio
async def test_real_uvicorn(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(warmup=False))
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    # Its own thread and event loop (uvloop/httptools when installed), as in production; the client runs here.
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert server.started, "uvicorn did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            assert (await client.get("/health/ready")).status_code == 200
            r = await client.post("/rank", json={"query": "capital of France", "documents": ["Paris", "Bananas"]})
            assert r.status_code == 200 and r.json()["model"] == STS
            assert r.headers["content-type"] == "application/json"
            assert_error(await client.post("/score", content=b"{", headers={"content-type": "application/json"}), 422)

            # Concurrent requests over TCP: all answered, each with its own pair's score.
            responses = await asyncio.gather(
                *(client.post("/score", json={"pairs": [[f"q {i}", f"doc {i}"]] * (1 + i % 3)}) for i in range(32))
            )
            assert [len(r.json()["scores"]) for r in responses] == [1 + i % 3 for i in range(32)]
            text = (await client.get("/metrics")).text
            assert metric(text, "hashrank_requests_total", route="/score", status="200", model=STS) == 32

            # A client that gives up once its pairs are queued: they are dropped, not scored.
            async def tokenized() -> float:
                text = (await client.get("/metrics")).text
                return metric(text, "hashrank_tokenize_duration_seconds_count", model=STS)

            async def until_tokenized(count: float) -> None:
                for _ in range(1000):
                    if await tokenized() >= count:
                        return
                    await asyncio.sleep(0.01)
                raise AssertionError("the request never reached the queue")

            dropped = metric(text, "hashrank_pairs_dropped_total", reason="disconnect")
            start = await tokenized()
            busy = asyncio.create_task(client.post("/score", json={"pairs": [["q", LONG]] * 48}))
            await until_tokenized(start + 1)
            gives_up = asyncio.create_task(client.post("/score", json={"pairs": [["q", LONG]] * 48}))
            await until_tokenized(start + 2)
            gives_up.cancel()  # httpx closes the connection; uvicorn reports http.disconnect
            assert (await busy).status_code == 200
            for _ in range(100):
                text = (await client.get("/metrics")).text
                if metric(text, "hashrank_pairs_dropped_total", reason="disconnect") > dropped:
                    break
                await asyncio.sleep(0.05)
            assert metric(text, "hashrank_pairs_dropped_total", reason="disconnect") > dropped
            assert metric(text, "hashrank_queue_depth_pairs", model=STS) == 0
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 30)
        assert not thread.is_alive(), "uvicorn did not stop"
