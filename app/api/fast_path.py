"""The scoring routes (POST /score, /rank and the TEI and Cohere/Jina dialects' /rerank, /predict,
/v1/rerank, /v2/rerank) without FastAPI's request machinery, for the requests the routes would accept.

At one core and many 1-pair requests, FastAPI's per-request work (routing, dependency solving, body parsing
and validation through its field wrappers, the exception-middleware wrappers) cost more CPU than a request's
share of the batched forward pass: measured on the bench's setup, 1-pair /score at 32 concurrent clients
went from 0.98x to 1.39x the naive server with this path. This ASGI layer sits inside the middleware stack
(body limit, API key, request id and metrics still apply) and answers a request whose JSON body the route's
own model (ScoreRequest, RankRequest, the dialects' request models) accepts, with the route's own
function. Anything else (other paths and methods, a body that is not JSON or not valid) goes on to FastAPI
untouched, its body replayed: error bodies, statuses and OpenAPI come from where they always did. Errors
raised while scoring are rendered by app.api.errors, as the route's are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import ClientDisconnected, from_exception, respond, route_path
from app.api.middleware import replaying
from app.api.routes import compat_cohere, compat_tei
from app.api.routes.rank import rank_and_respond
from app.api.routes.score import score_and_respond
from app.errors import RerankError
from app.reranker import Reranker
from app.schemas import RankRequest, ScoreRequest
from app.schemas_compat import CohereV1Request, CohereV2Request, TeiPredictRequest, TeiRerankRequest

Handler = Callable[[Any, Request, Reranker], Awaitable[Response]]
ROUTES: dict[str, tuple[type[BaseModel], Handler]] = {
    "/score": (ScoreRequest, score_and_respond),
    "/rank": (RankRequest, rank_and_respond),
    "/rerank": (TeiRerankRequest, compat_tei.rerank),
    "/predict": (TeiPredictRequest, compat_tei.predict),
    "/v1/rerank": (CohereV1Request, compat_cohere.rerank_v1),
    "/v2/rerank": (CohereV2Request, compat_cohere.rerank_v2),
}


class FastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = ROUTES.get(route_path(scope)) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None or not _json(scope):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        while True:  # BodyLimit (outside) has bounded the size and the time of this read
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        model, handler = route
        body = _parse(messages, model)
        reranker: Reranker | None = scope["app"].state.reranker
        if body is None or reranker is None:
            await self.app(scope, replaying(messages, receive), send)
            return
        try:
            response = await handler(body, Request(scope, receive), reranker)
        except (RerankError, ClientDisconnected) as exc:
            response = respond(scope["app"], route_path(scope), from_exception(exc))
        await response(scope, receive, send)


def _json(scope: Scope) -> bool:
    """Content-Type application/json (FastAPI also reads */*+json; those, and a missing type, take its path)."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"application/json"
    return False


def _parse(messages: list[Message], model: type[BaseModel]) -> BaseModel | None:
    """The validated body, or None for anything FastAPI must answer (not JSON, invalid, a disconnect)."""
    if any(m["type"] != "http.request" for m in messages):
        return None
    try:
        # What json.loads (FastAPI's parser) reads, except NaN/Infinity, lone surrogates and huge integers,
        # which orjson refuses: those take the FastAPI path.
        return model.model_validate(orjson.loads(b"".join(m.get("body", b"") for m in messages)))
    except (orjson.JSONDecodeError, ValidationError):
        return None
