"""Annotated dependencies: handlers reach app.state only through these.

They are `async def` on purpose: FastAPI runs a plain `def` dependency in its thread pool, a thread
hand-off per request that cost more than scoring a one-pair request."""

from __future__ import annotations

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


def label_model(request: Request, name: str) -> None:
    """Name the model in this request's metrics (read by the RequestMetrics middleware)."""
    request.state.model = name


RerankerDep = Annotated[Reranker, Depends(get_reranker)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
