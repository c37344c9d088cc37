"""The app over httpx/ASGI inside its lifespan, on the shipped model and a real ONNX session."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from app.main import create_app
from app.settings import Settings

STS = "sts-hash-nano"
ERROR_TYPES = {
    "validation_error",
    "payload_too_large",
    "model_not_found",
    "overloaded",
    "timeout",
    "not_ready",
    "internal_error",
    "not_found",
    "method_not_allowed",
    "invalid_request",
    "unauthorized",
}


@pytest.fixture(scope="session")
def make_settings(sts_model_dir: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        # Small warm-up shapes keep app start-up cheap on a shared 2-core machine.
        values: dict[str, Any] = {"models": {STS: sts_model_dir}, "threads": 1, "max_length": 256}
        values.update(overrides)
        return Settings(**values)

    return make


@contextlib.asynccontextmanager
async def running(settings: Settings, *, wait_ready: bool = True) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hashrank", timeout=60) as client:
            if wait_ready:
                await until_ready(client)
            yield app, client


async def until_ready(client: httpx.AsyncClient, timeout_s: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (await client.get("/health/ready")).status_code != 200:
        assert loop.time() < deadline, "the app never became ready"
        await asyncio.sleep(0.02)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(make_settings: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    """One app per test module with the default batching settings."""
    async with running(make_settings()) as (_, c):
        yield c


def assert_error(response: httpx.Response, status: int, error_type: str | None = None) -> dict[str, Any]:
    """The one error shape: {"error": {"type", "message", "param"?}}, JSON."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) <= {"type", "message", "param"} and {"type", "message"} <= set(error), error
    assert error["type"] in ERROR_TYPES and isinstance(error["message"], str) and error["message"]
    if error_type is not None:
        assert error["type"] == error_type, error
    return error


def metric(text: str, name: str, **labels: str) -> float:
    """A sample's value from a Prometheus exposition (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        series, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in series for k, v in labels.items()):
            return float(value)
    return 0.0
