"""Admission for the DynamicBatcher: whether a new request's pairs may join the queue, and the throughput
estimate that plans and Retry-After delays come from.

A request is refused (`Overloaded`, 429, with a Retry-After from the measured throughput) when
- more than `max_queue_pairs` pairs would wait;
- the queue would not reach its pairs before its deadline at the measured throughput (with fair queuing, each
  waiting request runs at most n pairs before the last of a new n-pair request): refusing it at once costs the
  server nothing, while admitting it would spend tokenization on a certain 504 and lengthen every accepted
  request's wait;
- its pairs would push a request already waiting past its own deadline: fair queuing runs later arrivals
  alongside the requests already waiting, so checking only the newcomer let a burst of them push the admitted
  ones into 504s.
Plans use PLAN_SHARE of the time left, for forward passes slower than average.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Protocol

from app.errors import Overloaded
from app.metrics import ModelMetrics

# Admission plans to finish a request within this share of the time it has left: room for forward passes
# slower than the measured average (long pairs) and for the slack bound being an estimate (see admit).
PLAN_SHARE = 0.75


class Waiting(Protocol):
    """What admission reads of a waiting request."""

    queued: int  # its pairs not yet taken into a batch


@dataclass(eq=False, slots=True)
class _SlackClass:
    """Waiting requests of one size class (see Admission.admit)."""

    largest: int  # the most pairs a request of the class has
    charged: int = 0  # pairs of slack each of its requests lost to admissions so far (an upper bound)
    heap: list[tuple[float, int, Waiting]] = field(default_factory=list)  # (slack + charged at admission, ...)


class Admission:
    def __init__(self, metrics: ModelMetrics, name: str, max_queue_pairs: int) -> None:
        self._metrics = metrics
        self.name = name
        self.max_queue_pairs = max_queue_pairs
        # Waiting requests' slack, by size class: request size's bit length -> _SlackClass.
        self._slack: dict[int, _SlackClass] = {}
        self._order = itertools.count()  # ties in a class's heap: admission order
        self.pairs_per_s = 0.0  # the measured throughput (0 before the first forward pass)

    def admit(self, n: int, deadline: float, live: int, waiting: Collection[Waiting]) -> float:
        """Raise Overloaded if n more pairs do not fit the queue (`live` pairs in it), would not be reached
        before the deadline at the measured throughput, or would push a request already admitted (`waiting`)
        past its own. Returns the new request's slack: how many more pairs may run before its last one and it
        still finish in time.

        Fair queuing runs every later arrival alongside the requests already waiting, so each admission of n
        pairs takes min(n, its pairs) of every waiting request's slack, while forward passes use it up no
        faster than its deadline approaches. Waiting requests are kept in size classes (bit length of their
        pair count); a class is charged min(n, its largest size) per admission, a bound on what each of its
        requests lost, and holds (slack at admission + charged until then) in a heap: the smallest slack of a
        class is one lookup, and a newcomer is checked against every class. Measured before this: with only
        the earliest deadline protected, accepted requests under overload took ~2x the wait planned for them."""
        if live + n > self.max_queue_pairs:
            raise self.refuse(
                n,
                live,
                f"the queue of model {self.name!r} is full ({live} pairs waiting); retry after the Retry-After "
                "delay or send fewer pairs",
            )
        for size_class in self._slack.values():
            while size_class.heap and size_class.heap[0][2] not in waiting:
                heapq.heappop(size_class.heap)  # finished: only waiting requests are protected
        if self.pairs_per_s <= 0:
            return math.inf  # nothing measured yet
        before = sum(min(r.queued, n) for r in waiting) + n  # pairs that run before the newcomer's last
        budget = PLAN_SHARE * (deadline - time.monotonic()) * self.pairs_per_s  # pairs that may run before it
        if waiting and before > budget:  # alone, a request always gets its chance
            raise self.refuse(
                n,
                live,
                f"model {self.name!r} would not reach these pairs before the request's deadline ({live} pairs "
                f"waiting, ~{before / self.pairs_per_s:.2f} s at the measured rate); retry after the "
                "Retry-After delay, raise timeout_ms or send fewer pairs",
            )
        if any(c.heap and c.heap[0][0] - c.charged < min(n, c.largest) for c in self._slack.values()):
            raise self.refuse(
                n,
                live,
                f"model {self.name!r} is at capacity: these pairs would make a request already waiting miss its "
                f"deadline ({live} pairs waiting); retry after the Retry-After delay or send fewer pairs",
            )
        return budget - before

    def register(self, request: Waiting, n: int, slack: float) -> None:
        """Record an admitted n-pair request with the slack admit() gave it; charge every waiting one."""
        for size_class in self._slack.values():
            size_class.charged += min(n, size_class.largest)
        own = self._slack.setdefault(n.bit_length(), _SlackClass(largest=(1 << n.bit_length()) - 1))
        heapq.heappush(own.heap, (slack + own.charged, next(self._order), request))

    def refuse(self, n: int, live: int, message: str) -> Overloaded:
        """The 429 for an n-pair request, counted, with a Retry-After from the measured throughput."""
        self._metrics.rejected.inc()
        return Overloaded(message, retry_after_s=self.retry_after(n, live))

    def retry_after(self, n: int, live: int) -> int:
        if self.pairs_per_s <= 0:
            return 1
        return max(1, min(60, math.ceil((live + n) / self.pairs_per_s)))

    def observe_pass(self, pairs: int, elapsed: float) -> None:
        """Update the throughput estimate with a forward pass of `pairs` that took `elapsed` s: an exponential
        average of forward-pass rates. (A pipeline rate, wall time between passes while a backlog waited, was
        tried in a316d8a and removed: on the 30 s overload run it made no difference beyond run-to-run noise.)"""
        rate = pairs / max(elapsed, 1e-6)
        self.pairs_per_s = rate if self.pairs_per_s == 0 else 0.8 * self.pairs_per_s + 0.2 * rate
