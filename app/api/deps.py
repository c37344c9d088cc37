"""Annotated dependencies: handlers reach app.state only through these.

They are `async def` on purpose: FastAPI runs a plain `def` dependency in its thread pool, a thread
hand-off per request that cost more than scoring a one-pair request."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Request

from app.errors import NotReady
from app.metrics import Metrics
from app.reranker import Reranker
from app.settings import Settings


async def get_reranker(request: Request) -> Reranker:
    reranker: Reranker | None = request.app.state.reranker
    if reranker is None:
        raise NotReady("the models are still loading; retry shortly")
    return reranker


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


def timeout_left(request: Request, timeout_ms: int | None) -> int | None:
    """The request's timeout_ms (or the server's default) minus the time since its head arrived: under load,
    reading and validating the body waits for the event loop, and that wait counts against the deadline too.
    A timeout over the limit passes through unchanged, for the reranker to refuse; one already spent is 0 (a 504
    before any work, however fast the work would be)."""
    received = getattr(request.state, "received_at", None)
    settings: Settings = request.app.state.settings
    if received is None or (timeout_ms is not None and timeout_ms > settings.max_timeout_ms):
        return timeout_ms
    total = timeout_ms if timeout_ms is not None else settings.timeout_ms
    return max(0, total - int((time.monotonic() - received) * 1000))


def label_model(request: Request, name: str) -> None:
    """Name the model in this request's metrics (read by the RequestMetrics middleware)."""
    request.state.model = name


RerankerDep = Annotated[Reranker, Depends(get_reranker)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
