"""Fixtures for the rerank dialects: both shipped models in one app (similarity + reranker), over
httpx/ASGI inside the lifespan, or on a real uvicorn at 127.0.0.1 for the client libraries."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn

from app.main import create_app
from app.settings import Settings
from tests.api.conftest import running
from tests.conftest import RERANK_MODEL_DIR

STS = "sts-hash-nano"
RERANK = "rerank-hash-nano"
QUERY = "how do cats see in the dark"
DOCS = [
    "Cats have a reflective layer behind the retina that helps them see in low light.",
    "The dark side of the moon is not actually dark.",
    "Dogs and cats are the most popular pets in many countries.",
    "Night vision in cats comes from many rod cells and pupils that open very wide in the dark.",
]


@pytest.fixture(scope="session")
def rerank_model_dir() -> Path:
    assert (RERANK_MODEL_DIR / "model.onnx").is_file(), f"shipped model missing: {RERANK_MODEL_DIR}"
    return RERANK_MODEL_DIR


@pytest.fixture(scope="session")
def compat_settings(sts_model_dir: Path, rerank_model_dir: Path) -> Callable[..., Settings]:
    """Both shipped models: /score defaults to the similarity model, the rerank routes to the reranker."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "models": {STS: sts_model_dir, RERANK: rerank_model_dir},
            "threads": 1,
            "warmup": False,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(compat_settings: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    async with running(compat_settings()) as (_, c):
        yield c


@contextlib.contextmanager
def uvicorn_server(settings: Settings) -> Iterator[str]:
    """A real uvicorn on 127.0.0.1 (free port) in its own thread; yields the base URL once ready."""
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started, "uvicorn did not start"
        url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        while httpx.get(f"{url}/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "the server never became ready"
            time.sleep(0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="session")
def server_url(compat_settings: Callable[..., Settings]) -> Iterator[str]:
    """One real server for every client-library and docs test."""
    with uvicorn_server(compat_settings()) as url:
        yield url


async def scores_of(client: httpx.AsyncClient, pairs: list[tuple[str, str]], model: str = RERANK) -> list[float]:
    """The native /score of pairs: what every dialect must agree with."""
    r = await client.post("/score", json={"pairs": [list(p) for p in pairs], "model": model})
    assert r.status_code == 200, r.text
    scores: list[float] = r.json()["scores"]
    return scores


def ranked(scores: list[float]) -> list[int]:
    """Indices best first, ties by index: the order every dialect returns."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))
