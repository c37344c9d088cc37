"""Annotated dependencies: handlers reach app.state only through these."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.errors import NotReady
from app.metrics import Metrics
from app.reranker import Reranker
from app.settings import Settings


def get_reranker(request: Request) -> Reranker:
    reranker: Reranker | None = request.app.state.reranker
    if reranker is None:
        raise NotReady("the models are still loading; retry shortly")
    return reranker


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


def label_model(request: Request, name: str) -> None:
    """Name the model in this request's metrics (read by the RequestMetrics middleware)."""
    request.state.model = name


RerankerDep = Annotated[Reranker, Depends(get_reranker)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
