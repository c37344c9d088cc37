"""Stop working for clients that have gone away: their queued pairs are dropped, not scored."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from fastapi import Request
from starlette.types import Receive

from app.api.errors import ClientDisconnected

T = TypeVar("T")


async def cancel_on_disconnect(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Await `work`; if the client disconnects first, cancel it (the batcher then drops its queued
    pairs) and raise ClientDisconnected.

    `work` runs in the calling task and one watcher task cancels that task on disconnect: about 50 us less
    per request than running both as tasks under asyncio.wait, which a 1-pair request notices."""
    caller = asyncio.current_task()
    assert caller is not None
    watcher = asyncio.ensure_future(_disconnected(request.receive))

    def on_disconnect(done: asyncio.Future[None]) -> None:
        if not done.cancelled() and done.exception() is None:
            caller.cancel()

    watcher.add_done_callback(on_disconnect)
    try:
        return await work
    except asyncio.CancelledError:
        if watcher.done() and not watcher.cancelled() and watcher.exception() is None:
            caller.uncancel()  # our own cancellation, not the server's: do not leave the task cancelling
            raise ClientDisconnected("the client closed the connection before the response was ready") from None
        raise
    finally:
        watcher.remove_done_callback(on_disconnect)
        watcher.cancel()


async def _disconnected(receive: Receive) -> None:
    # The body has been read: the next message the server sends is http.disconnect.
    while (await receive())["type"] != "http.disconnect":
        pass
