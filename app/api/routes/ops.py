"""Operations: health, info, models, metrics."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import PlainTextResponse, Response

from app.api.deps import MetricsDep, SettingsDep
from app.api.responses import JSONBody
from app.api.routes import ERROR_TEXT, error_responses
from app.api.routes.compat_tei import tei_info
from app.errors import NotReady
from app.metrics import CONTENT_TYPE
from app.reranker import Reranker
from app.schemas import ErrorResponse

router = APIRouter(tags=["operations"], responses=error_responses(ErrorResponse, {405: ERROR_TEXT[405]}))
# /health/* and /metrics are open to probes and scrapers; the rest needs the key when one is set.
_KEYED = error_responses(ErrorResponse, {401: ERROR_TEXT[401]})

try:
    VERSION = version("hashrank")
except PackageNotFoundError:  # running from a checkout that was never installed
    VERSION = "0.0.0+checkout"


def _reranker(request: Request) -> Reranker | None:
    reranker: Reranker | None = request.app.state.reranker
    return reranker


@router.get("/health/live")
async def live() -> Response:
    """The process is up (it says nothing about the model)."""
    return JSONBody({"status": "alive"})


@router.get("/health/ready", responses=error_responses(ErrorResponse, {503: ERROR_TEXT[503]}))
async def ready(request: Request) -> Response:
    """200 once every model is loaded and warmed up and its last forward pass succeeded; 503 before, and
    while draining."""
    reranker = _reranker(request)
    if reranker is None or not reranker.accepting:
        state = "draining" if reranker is not None and reranker.draining else "loading or warming up"
        raise NotReady(f"not ready: {state}")
    if not reranker.ready and not await reranker.probe():
        raise NotReady("not ready: the last forward pass failed and a probe failed too; see the server log")
    return JSONBody({"status": "ready"})


router.add_api_route(
    "/health",
    ready,
    methods=["GET"],
    summary="Same as /health/ready (TEI's path)",
    responses=error_responses(ErrorResponse, {503: ERROR_TEXT[503]}),
)


@router.get("/models", responses=_KEYED)
async def models(request: Request) -> Response:
    """The models this process serves; `model` in a request picks one by name."""
    reranker = _reranker(request)
    return JSONBody({"models": [m.info() for m in reranker.models.values()] if reranker else []})


@router.get("/info", responses=_KEYED)
async def info(request: Request, settings: SettingsDep) -> Response:
    """Version, models, defaults and every limit a client should respect."""
    reranker = _reranker(request)
    body: dict[str, Any] = {
        "name": "hashrank",
        "version": VERSION,
        "ready": bool(reranker and reranker.ready),
        "models": [m.info() for m in reranker.models.values()] if reranker else [],
        "default_score_model": reranker.default_score if reranker else None,
        "default_rank_model": reranker.default_rank if reranker else None,
        "limits": {
            "max_pairs_per_request": settings.max_pairs_per_request,
            "max_request_bytes": settings.max_request_bytes,
            "max_batch_pairs": settings.resolved_max_batch_pairs(),
            "max_batch_tokens": settings.max_batch_tokens,
            "max_padding_ratio": settings.max_padding_ratio,
            "max_wait_ms": settings.max_wait_ms,
            "max_queue_pairs": settings.max_queue_pairs,
            "timeout_ms": settings.timeout_ms,
            "max_timeout_ms": settings.max_timeout_ms,
        },
        "backend": settings.backend,
        "workers": settings.workers,
    }
    body.update(tei_info(reranker, settings))  # TEI's fields (model_id, max_client_batch_size, ...) for its clients
    return JSONBody(body)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"}},
)
async def metrics(metrics: MetricsDep) -> Response:
    """Prometheus exposition (all workers merged in multiprocess mode)."""
    return Response(metrics.render(), media_type=CONTENT_TYPE)
