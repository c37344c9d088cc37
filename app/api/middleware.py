"""ASGI middleware: the API key, the request body limit and read deadline, the request id and access log,
and the HTTP metrics. Pure ASGI (no BaseHTTPMiddleware), so streaming and disconnects pass through untouched."""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import ApiError, respond, route_path
from app.api.read_timeout import TIMEOUT_MESSAGE
from app.metrics import Metrics

access_log = logging.getLogger("hashrank.access")

# Probes and scrapers do not carry the key: orchestrators and Prometheus reach these without it.
OPEN_PATHS = ("/health", "/metrics")


class ApiKey:
    """401 unless the request carries `Authorization: Bearer <key>` (the scheme is case-insensitive)."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app = app
        self.expected = f"bearer {key}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or route_path(scope).startswith(OPEN_PATHS) or self._authorised(scope):
            await self.app(scope, receive, send)
            return
        error = ApiError(
            401,
            "unauthorized",
            "missing or wrong API key: send the header `Authorization: Bearer <key>`",
            headers={"WWW-Authenticate": "Bearer"},
        )
        await respond(scope["app"], route_path(scope), error)(scope, receive, send)

    def _authorised(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                return hmac.compare_digest(scheme.lower() + b" " + token.strip(), self.expected)
        return False


class BodyLimit:
    """Refuse a body over max_bytes with 413 before anything parses it: at once from Content-Length, or
    as soon as a chunked body grows past the limit; and one that has not fully arrived read_timeout_s
    after the request's head with 408 (and close the connection). The accepted body is replayed to the app."""

    def __init__(self, app: ASGIApp, max_bytes: int, read_timeout_s: float, metrics: Metrics) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s
        self.timeouts = metrics.read_timeouts.labels("body")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send, declared)
            return
        messages: list[Message] = []
        size = 0
        deadline = time.monotonic() + self.read_timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), deadline - time.monotonic())
            except TimeoutError:
                await self._too_slow(scope, receive, send)
                return
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(scope, receive, send, size)
                return
            if not message.get("more_body", False):
                break

        await self.app(scope, replaying(messages, receive), send)

    async def _too_slow(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.timeouts.inc()
        message = TIMEOUT_MESSAGE.format(self.read_timeout_s)
        error = ApiError(408, "request_timeout", message, headers={"Connection": "close"})
        await respond(scope["app"], route_path(scope), error)(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, size: int) -> None:
        error = ApiError(
            413,
            "payload_too_large",
            f"the request body has {size} bytes or more; the limit is {self.max_bytes}: send fewer or shorter "
            "documents",
        )
        await respond(scope["app"], route_path(scope), error)(scope, receive, send)


def replaying(messages: list[Message], receive: Receive) -> Receive:
    """A receive() that hands out the body messages already read, then the connection's own."""

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return replay


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class RequestMetrics:
    """Requests by route, status and model; latency; in-flight by route. The route label is the request's
    path when it is one of the app's route paths (all static), else "other", so scanners cannot grow the
    label set; the model is what the handler resolved (request.state.model)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, route_paths: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.route_paths = route_paths

    def route_label(self, scope: Scope) -> str:
        path = route_path(scope)
        return path if path in self.route_paths else "other"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        label = self.route_label(scope)
        in_flight = self.metrics.in_flight.labels(label)
        status = 500  # if the app raises before responding, ServerErrorMiddleware sends a 500
        started = scope.setdefault("state", {}).setdefault("received_at", time.monotonic())  # the head's arrival

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        in_flight.inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            in_flight.dec()
            model = str(scope.get("state", {}).get("model", ""))
            self.metrics.requests.labels(label, str(status), model).inc()
            self.metrics.request_seconds.labels(label, model).observe(time.monotonic() - started)


# A caller's request id is echoed if it is short printable ASCII (it lands in logs and headers); else ours.
_REQUEST_ID = re.compile(rb"[\x21-\x7e]{1,128}")


class RequestId:
    """`X-Request-ID`: the caller's (or a fresh UUID) in scope["state"]["request_id"], on the response, and
    in the access log line written when the response is complete: client, request line, status, ms, id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(b"x-request-id", b"")
        request_id = sent.decode() if _REQUEST_ID.fullmatch(sent) else str(uuid.uuid4())
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        # Where the request's deadline and latency start (deps.timeout_left): set when the head was parsed
        # (app/api/read_timeout.py), else now.
        started = state.setdefault("received_at", time.monotonic())
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if access_log.isEnabledFor(logging.INFO):  # off: none of the line's formatting is paid for
                self._log(scope, status, started, request_id)

    @staticmethod
    def _log(scope: Scope, status: int, started: float, request_id: str) -> None:
        client = "{}:{}".format(*scope["client"]) if scope.get("client") else "-"
        query = "?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else ""
        access_log.info(
            '%s - "%s %s%s HTTP/%s" %d %.1fms request_id=%s',
            *(client, scope["method"], scope["path"], query, scope["http_version"], status),
            (time.monotonic() - started) * 1000,
            request_id,
        )
