"""create_app(settings) -> the FastAPI app. The lifespan loads every model (a failure stops startup),
starts the batchers and warms up in the background: /health/live answers at once, /health/ready and the
scoring routes only once warm-up is done. On shutdown the app reports not ready, drains the queues and
stops."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app.api.errors import install_error_handlers
from app.api.fast_path import FastPath
from app.api.middleware import ApiKey, BodyLimit, RequestId, RequestMetrics
from app.api.open_requests import OpenRequests
from app.api.openapi import install_openapi
from app.api.responses import JSONBody
from app.api.routes import compat_cohere, compat_tei, ops, rank, score
from app.metrics import Metrics, mark_process_dead
from app.reranker import Reranker
from app.runtime.memory import use_one_malloc_arena
from app.settings import Settings, usable_cpus

log = logging.getLogger(__name__)
ROUTES = (score, rank, ops)
DIALECTS = (compat_tei, compat_cohere)  # TEI, Cohere and Jina routes, each installed with its error body


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings if settings is not None else Settings()
    metrics = Metrics()
    open_requests = OpenRequests()
    use_one_malloc_arena()  # before the tokenizer and inference threads exist
    if usable_cpus() // settings.workers <= 1:
        # One core per worker: the tokenizer's Rayon pool would only add a thread hand-off per request.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        reranker = await asyncio.to_thread(Reranker.load, settings, metrics, open_requests.alone)
        reranker.start()
        app.state.reranker = reranker
        warm = asyncio.create_task(_warm_up(reranker))
        if settings.workers > 1:
            # Workers share one socket: one still warming would take connections only to answer 503. Its
            # siblings serve meanwhile (a worker uvicorn replaces after a crash, or all of them at start).
            await asyncio.shield(warm)
        try:
            yield
        finally:
            reranker.draining = True
            warm.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await warm
            await reranker.stop()
            mark_process_dead(os.getpid())

    app = FastAPI(
        title="hashrank",
        summary="Cross-encoder scoring and reranking on CPU",
        version=ops.VERSION,
        lifespan=lifespan,
        default_response_class=JSONBody,
        root_path=settings.root_path,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.open_requests = open_requests
    app.state.reranker = None
    install_error_handlers(app)
    for module in ROUTES:
        app.include_router(module.router)
    for dialect in DIALECTS:
        dialect.install(app)
    routers = [module.router for module in (*ROUTES, *DIALECTS)]
    install_openapi(app, settings)
    app.add_middleware(FastPath)  # innermost: the body limit and the key are checked before it reads
    app.add_middleware(
        BodyLimit, max_bytes=settings.max_request_bytes, read_timeout_s=settings.read_timeout_s, metrics=metrics
    )
    if settings.api_key is not None and settings.api_key.get_secret_value():
        app.add_middleware(ApiKey, key=settings.api_key.get_secret_value())  # before the body is read
    # Outermost: sees the 413s and 401s too.
    app.add_middleware(RequestMetrics, metrics=metrics, route_paths=_route_paths(app, routers))
    app.add_middleware(RequestId)
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:  # off unless configured: without CORS headers browsers refuse cross-origin calls
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"], allow_headers=["*"])
    return app


def _route_paths(app: FastAPI, routers: list[APIRouter]) -> frozenset[str]:
    """The app's route paths (its own and those of the routers it includes: FastAPI does not list included
    routes on the app) for the metrics' route label; a path parameter would need template matching."""
    routes = [*app.routes, *(route for router in routers for route in router.routes)]
    paths = frozenset(str(route.path) for route in routes if hasattr(route, "path"))
    templated = sorted(p for p in paths if "{" in p)
    assert not templated, f"route metrics label static paths only: {templated}"
    return paths


async def _warm_up(reranker: Reranker) -> None:
    try:
        await reranker.warm_up()
    except Exception:  # stays not ready; the log says why
        log.exception("warm-up failed; /health/ready stays 503")
        return
    # What startup built (modules, FastAPI's schemas, the models: ~77k objects) lives as long as the process:
    # out of the collector's sight, a full collection no longer walks it. Under 1-pair /score at c=32 each one
    # had stopped the event loop for ~25 ms (p99 35.5 -> 28.7 ms with this, loadtest/README.md).
    gc.collect()
    gc.freeze()
