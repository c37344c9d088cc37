"""The one place exceptions become HTTP responses.

Every error is first reduced to an `ApiError` (status, type, message, param, headers); a renderer chosen
by path prefix turns it into a body. Our routes use `{"error": {"type", "message", "param"?}}`; an API
dialect (TEI, Cohere) registers its own renderer for its prefix with `register_error_renderer`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from app.api.responses import JSONBody
from app.errors import (
    DeadlineExceeded,
    InvalidInput,
    ModelLoadError,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    RerankError,
    RuntimeFailure,
    UnknownModel,
)

log = logging.getLogger(__name__)

# Most specific class first: the first isinstance match wins.
STATUS: list[tuple[type[RerankError], int]] = [
    (PayloadTooLarge, 413),
    (InvalidInput, 422),
    (UnknownModel, 404),
    (Overloaded, 429),
    (DeadlineExceeded, 504),
    (NotReady, 503),
    (RuntimeFailure, 500),
    (ModelLoadError, 500),
]
_HTTP_TYPES = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
# nginx's "client closed request": nobody reads it, but logs and metrics show what happened.
CLIENT_CLOSED = 499


class ClientDisconnected(Exception):
    """The client went away before its response was ready; its queued work was dropped."""


@dataclass(frozen=True)
class ApiError:
    status: int
    type: str
    message: str
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


ErrorRenderer = Callable[[ApiError], Response]


def render_error(error: ApiError) -> Response:
    """Our shape: {"error": {"type", "message", "param"?}}."""
    body: dict[str, Any] = {"type": error.type, "message": error.message}
    if error.param is not None:
        body["param"] = error.param
    return JSONBody({"error": body}, status_code=error.status, headers=error.headers)


def register_error_renderer(app: FastAPI, prefix: str, renderer: ErrorRenderer) -> None:
    """Render errors of paths under `prefix` (e.g. "/v1/rerank") with `renderer`; longest prefix wins."""
    renderers: dict[str, ErrorRenderer] = app.state.error_renderers
    renderers[prefix] = renderer


def respond(scope_app: Any, path: str, error: ApiError) -> Response:
    renderers: dict[str, ErrorRenderer] = getattr(scope_app.state, "error_renderers", {})
    matches = [p for p in renderers if path.startswith(p)]
    renderer = renderers[max(matches, key=len)] if matches else render_error
    return renderer(error)


def from_exception(exc: Exception) -> ApiError:
    if isinstance(exc, RerankError):
        status = next((s for cls, s in STATUS if isinstance(exc, cls)), 500)
        if status >= 500 and not isinstance(exc, (NotReady, DeadlineExceeded)):
            log.error("request failed: %s", exc, exc_info=exc)
            return ApiError(status, exc.error_type, "internal error; it has been logged")
        headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, Overloaded) else {}
        return ApiError(status, exc.error_type, exc.message, exc.param, headers)
    if isinstance(exc, RequestValidationError):
        return _from_validation(exc)
    if isinstance(exc, StarletteHTTPException):
        # Keep the exception's headers: a 405 carries `Allow` (RFC 9110).
        headers = dict(exc.headers or {})
        return ApiError(exc.status_code, _HTTP_TYPES.get(exc.status_code, "http_error"), str(exc.detail), None, headers)
    if isinstance(exc, ClientDisconnected):
        return ApiError(CLIENT_CLOSED, "client_closed_request", str(exc))
    log.error("unhandled error", exc_info=exc)
    return ApiError(500, "internal_error", "internal error; it has been logged")


def _from_validation(exc: RequestValidationError) -> ApiError:
    first: dict[str, Any] = dict(exc.errors()[0]) if exc.errors() else {"loc": (), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        where = f" at position {loc[0]}" if loc else ""
        detail = (first.get("ctx") or {}).get("error", "")
        return ApiError(422, "validation_error", f"the body is not valid JSON{where}: {detail}".rstrip(": "))
    param = ".".join(loc) or None
    message = str(first.get("msg", "invalid value"))
    if first.get("type") == "missing" and param is None:
        message = "the body is empty; send a JSON object (see /docs for the request schema)"
    elif first.get("type") == "missing":
        message = f"field required: {param}"
    elif first.get("type") == "extra_forbidden":
        message = f"unknown field {param}; see /docs for the request schema"
    elif param:
        message = f"{param}: {message}"
    more = len(exc.errors()) - 1
    if more > 0:
        message += f" (and {more} more error{'s' if more > 1 else ''})"
    return ApiError(422, "validation_error", message, param)


def route_path(scope: Any) -> str:
    """The path without the proxy's root_path, as routes and renderer prefixes are written."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] or "/" if root and path.startswith(root) else path


async def _handle(request: Request, exc: Exception) -> Response:
    return respond(request.app, route_path(request.scope), from_exception(exc))


def install_error_handlers(app: FastAPI) -> None:
    app.state.error_renderers = {}
    for cls in (RerankError, RequestValidationError, StarletteHTTPException, ClientDisconnected, Exception):
        app.add_exception_handler(cls, _handle)
