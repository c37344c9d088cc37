"""Whether a request is alone in the server: one client connection open, one request task in hand (uvicorn's own
sets: a task is added when its request head is parsed, before it first runs). The batcher runs a tiny request
at once, on the event loop, only then (app/batching.py); with anything else in hand it queues as usual, so
concurrent small requests still share forward passes. The connection count matters too: with several clients,
the next request is often on its way while this one runs, and running each at once as it came would settle
into one forward pass per request (measured: 1-pair /score at c=32 lost ~10% that way).

`hashrank serve`'s protocol (app/api/read_timeout.py) attaches the sets when a connection opens; under any other
server (granian, an in-process test client) nothing is attached and nothing runs at once."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


class OpenRequests:
    def __init__(self) -> None:
        self._connections: Collection[Any] = ()
        self._tasks: Collection[Any] = ()
        self._attached = False

    def attach(self, connections: Collection[Any], tasks: Collection[Any]) -> None:
        self._connections, self._tasks, self._attached = connections, tasks, True

    def alone(self) -> bool:
        """True if the calling request is the only one in the server, on its only connection."""
        return self._attached and len(self._tasks) <= 1 and len(self._connections) <= 1
