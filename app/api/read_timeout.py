"""A deadline on the request head, which ASGI middleware never sees: uvicorn parses headers before it calls
the app, and waits for them forever. A connection that has not sent a complete request head within
HASHRANK_READ_TIMEOUT_S of connecting (or of its previous response) gets 408 and is closed; the body's
deadline is BodyLimit's (app/api/middleware.py). Both count in hashrank_read_timeouts_total.

The head's arrival is also where a request's deadline and its latency metric start (scope state
"received_at"): under overload a parsed request can wait behind many others before the app is called, and
that wait is the client's too.

`hashrank serve` passes ReadTimeoutProtocol to uvicorn as its `http` protocol class."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.api.errors import ApiError, respond

TIMEOUT_MESSAGE = "the request was not received within {:g} s; the connection is closed: send it faster or retry"


class ReadTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus a timer from connection (or the start of a request) to headers done."""

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        state = _app_state(self.app)
        if state is not None:
            state.open_requests.attach(self.connections, self.tasks)  # the server's, shared by every connection
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:  # a keep-alive connection's next request
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        self.scope["state"]["received_at"] = time.monotonic()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        state = _app_state(self.app)
        if state is not None:
            self._head_timer = self.loop.call_later(state.settings.read_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _timed_out(self) -> None:
        self._head_timer = None
        busy = self.cycle is not None and not self.cycle.response_complete
        if self.transport.is_closing() or busy:  # a pipelined request waits behind a running one: not stalled
            return
        state = _app_state(self.app)
        state.metrics.read_timeouts.labels("headers").inc()
        path = self.url.split(b"?", 1)[0].decode("latin-1") if self.url else "/"
        error = ApiError(408, "request_timeout", TIMEOUT_MESSAGE.format(state.settings.read_timeout_s))
        response = respond(_fastapi(self.app), path, error)
        head = [b"HTTP/1.1 408 Request Timeout\r\n"]
        head += [name + b": " + value + b"\r\n" for name, value in response.raw_headers]
        self.transport.write(b"".join(head) + b"connection: close\r\n\r\n" + response.body)
        self.transport.close()


def _fastapi(app: Any) -> Any:
    """The FastAPI app under uvicorn's wrappers (proxy headers, message logger), which each keep it as `.app`."""
    while app is not None and not hasattr(app, "state"):
        app = getattr(app, "app", None)
    return app


def _app_state(app: Any) -> Any:
    found = _fastapi(app)
    return found.state if found is not None else None
