"""DynamicBatcher: turns many small requests into few forward passes. It speaks only items and futures.

A request's items (one per pair: payload, token length) share the request's deadline and future. They
wait in one queue ordered by fair-queuing tags: item k of a request gets tag (virtual time at arrival
+ k), so a 500-document request and a 1-pair request that arrive together interleave one item per
request per round, and the small one is never stuck behind the big one (start-time fair queuing, with
the request as the flow). To form a batch the batcher pops the `window` lowest tags, keeps the lowest as the anchor (it
always runs: no starvation) and adds the pool items closest in length to it while
`pairs <= max_batch_pairs`, `pairs x longest <= max_batch_tokens` (TEI's padded budget, Infinity's
length sorting), `pairs x longest x max(longest, 128) <= max_batch_tokens x 128` (attention scores grow with
the square of the length: 8 pairs of 512 tokens would hold ~90 MB of them, 2 pairs ~20 MB, at the same cost
per token) and padding stays under `max_padding_ratio`. The rest goes back. On a CPU a forward pass
costs about the same per padded token at any batch size, so padding is pure waste there, while one more
pass costs little: a mixed queue is better run as a few length-homogeneous batches than one padded one.

Continuous batching: when a forward pass ends the next batch is formed at once from what arrived
meanwhile; only an idle batcher waits, at most `max_wait_ms`, for a batch to fill. Forward passes run in
one worker thread per model, so the event loop keeps serving I/O while they run; only a tiny batch of an
idle batcher (inline_padded_tokens) runs on the event loop itself, where the thread hand-offs would cost more
than the pass. A tiny request alone in the server (`alone`: one connection, one request; see
app/api/open_requests.py) does not even queue: enqueue() runs its pass at once, saving the batching loop's two
wake-ups.

Admission (app/admission.py) decides, before a request's pairs are tokenized, whether they may join the
queue (else `Overloaded`, 429). A request is admitted (reserve) before tokenizing and counts in the queue from
then on (enqueue adds its payloads): under overload the tokenizer pool holds a queue of its own, which
admission must see.
A request whose deadline passes, or whose waiter is cancelled (the client went away), leaves the queue at once:
its pairs are counted and never run. A failed forward pass fails every request with a pair in it, with the
same error.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from app.admission import Admission
from app.errors import DeadlineExceeded, NotReady, RerankError, RuntimeFailure
from app.metrics import ModelMetrics
from app.runtime.memory import release_free_memory

# A model's queue must stay empty this long before its freed activations go back to the OS.
IDLE_TRIM_S = 1.0
# Up to this length a batch is limited by its padded tokens alone; longer ones also by their attention size.
_SHORT = 128
# What a served model passes as inline_padded_tokens: a batch of one or two short pairs. Its forward pass
# (~0.2 ms for one pair here) costs less than the worker's two thread hand-offs, which made a lone 1-pair
# /score slower than a naive one-call-per-request server.
INLINE_PADDED_TOKENS = 128

log = logging.getLogger(__name__)

# payloads -> one output per payload: anything with len() and iteration (a list, an (N, L) array).
RunBatch = Callable[[list[Any]], Any]


@dataclass(eq=False)
class _Request:
    """The waiters of one submit(): one future for all its items."""

    future: asyncio.Future[list[Any]]
    deadline: float  # time.monotonic() seconds
    enqueued: float
    outputs: list[Any]
    remaining: int  # items not yet delivered
    queued: int  # items not yet taken into a batch (still being tokenized, or waiting in the queue)


@dataclass(eq=False, slots=True)
class _Item:
    request: _Request
    index: int  # position in the request's payloads
    payload: Any
    length: int  # tokens; the padded cost of a batch is pairs x the longest length


@dataclass(order=True, slots=True)
class _Entry:
    tag: int
    seq: int
    item: _Item = field(compare=False)


class DynamicBatcher:
    def __init__(
        self,
        run_batch: RunBatch,
        metrics: ModelMetrics,
        *,
        max_batch_pairs: int = 32,
        max_batch_tokens: int = 32 * 128,
        max_wait_ms: float = 2.0,
        max_queue_pairs: int = 4096,
        max_padding_ratio: float = 1.0,
        window: int = 4,
        inline_padded_tokens: int = 0,
        alone: Callable[[], bool] = lambda: False,
        name: str = "model",
    ) -> None:
        self._run_batch = run_batch
        self._metrics = metrics
        self.max_batch_pairs = max_batch_pairs
        self.max_batch_tokens = max_batch_tokens
        self._attention_budget = max_batch_tokens * _SHORT
        self.max_wait_s = max_wait_ms / 1000
        self._admission = Admission(metrics, name, max_queue_pairs)
        self.max_padding_ratio = max_padding_ratio
        # Pool size when forming a batch: a few batches' worth gives length sorting room to work.
        self._window = max(1, window) * max_batch_pairs
        # A batch of at most this many padded tokens, formed by an idle batcher with nothing else queued, runs
        # on the event loop instead of the worker thread (0: never).
        self.inline_padded_tokens = inline_padded_tokens
        # Whether the submitting request is the only one in the server: then a tiny one runs at once, in
        # enqueue() (nothing could have joined its batch).
        self._alone = alone
        self.name = name

        self._heap: list[_Entry] = []
        self._seq = 0
        self._vtime = 0  # highest tag dispatched so far: new requests start their tags here
        self._live = 0  # queued items of requests still waiting (the queue depth)
        self._waiting: set[_Request] = set()  # requests with items still queued
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False
        self._running = False  # a forward pass is running on the worker thread
        self.healthy = True  # False after a failed forward pass, until one succeeds

    # ---- lifecycle ----

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"infer-{self.name}")
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"batcher-{self.name}")

    async def stop(self, drain_timeout_s: float = 10.0) -> None:
        """Refuse new work, finish the queue (up to drain_timeout_s), then fail whatever is left."""
        self._closing = True
        self._arrived.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), drain_timeout_s)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        for entry in self._heap:
            self._finish(entry.item.request, _shutdown_error())
        self._heap.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    @property
    def depth(self) -> int:
        """Pairs waiting for a forward pass."""
        return self._live

    @property
    def pairs_per_s(self) -> float:
        """The measured throughput admission plans with (0 before the first forward pass)."""
        return self._admission.pairs_per_s

    # ---- submitting ----

    async def run(self, payloads: Sequence[Any], lengths: Sequence[int], deadline: float) -> list[Any]:
        """Outputs of run_batch for each payload, in order. Raises Overloaded, DeadlineExceeded, NotReady,
        or the batch's error; cancelling the caller drops its queued items."""
        return await self.wait(self.submit(payloads, lengths, deadline))

    def submit(self, payloads: Sequence[Any], lengths: Sequence[int], deadline: float) -> _Request:
        request = self.reserve(len(payloads), deadline)
        self.enqueue(request, payloads, lengths)
        return request

    def reserve(self, n: int, deadline: float) -> _Request:
        """Admit a request of n pairs whose payloads are still being prepared (tokenized): from now on its
        pairs count in the queue, so admission sees the requests being tokenized too. Raises Overloaded,
        DeadlineExceeded or NotReady; the caller must enqueue() it or abandon() it."""
        if self._closing or self._task is None:
            raise NotReady("the model is not serving (starting or shutting down); retry shortly")
        now = time.monotonic()
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        request = _Request(future, deadline, now, [None] * n, remaining=n, queued=n)
        if n == 0:
            future.set_result([])
            return request
        if deadline <= now:
            self._metrics.dropped_deadline.inc(n)
            raise _deadline_error()
        slack = self._admission.admit(n, deadline, self._live, self._waiting)
        self._admission.register(request, n, slack)
        self._live += n
        self._waiting.add(request)
        self._metrics.queue_depth.set(self._live)
        return request

    def enqueue(self, request: _Request, payloads: Sequence[Any], lengths: Sequence[int]) -> None:
        """Queue a reserved request's payloads (one per pair, in its order) for forward passes."""
        if request.future.done():  # finished meanwhile (its deadline, or the server stopping)
            return
        if len(payloads) != len(request.outputs):
            raise ValueError(f"{len(payloads)} payloads for a request of {len(request.outputs)} pairs")
        if self._closing:
            self._finish(request, _shutdown_error())
            return
        if self._can_run_directly(request, lengths):
            self._run_directly(request, payloads, lengths)
            return
        start = self._vtime
        for k, i in enumerate(sorted(range(len(payloads)), key=lengths.__getitem__)):
            self._seq += 1
            heapq.heappush(self._heap, _Entry(start + k + 1, self._seq, _Item(request, i, payloads[i], lengths[i])))
        request.enqueued = time.monotonic()
        self._arrived.set()
        if len(self._heap) >= self.max_batch_pairs:
            self._full.set()

    def _can_run_directly(self, request: _Request, lengths: Sequence[int]) -> bool:
        """A tiny request alone in an idle batcher: nothing queued, nothing being tokenized, no pass running."""
        return (
            not self._running
            and not self._heap
            and self._alone()
            and self._live == request.queued
            and len(lengths) * max(lengths) <= self.inline_padded_tokens
        )

    def _run_directly(self, request: _Request, payloads: Sequence[Any], lengths: Sequence[int]) -> None:
        """Its forward pass, here on the event loop, before the caller awaits: the batching loop's two wake-ups
        (its queue event, then the request's future) cost about as much as the pass itself."""
        request.enqueued = time.monotonic()
        if request.deadline <= request.enqueued:
            self._finish(request, _deadline_error(), reason="deadline")
            return
        self._waiting.discard(request)
        self._live -= request.queued
        request.queued = 0
        self._metrics.queue_seconds.observe(0.0)
        self._metrics.queue_depth.set(self._live)
        self._metrics.direct_passes.inc()
        self._forward_here([_Item(request, i, p, n) for i, (p, n) in enumerate(zip(payloads, lengths, strict=True))])

    def abandon(self, request: _Request, reason: str) -> None:
        """Give up a reserved request before it was enqueued (reason: "deadline" or "disconnect" for the
        dropped-pairs metric, "" otherwise): its pairs leave the queue count."""
        self._finish(request, None, reason=reason)

    async def wait(self, request: _Request) -> list[Any]:
        """The outputs of an enqueued request, in order; its deadline or the caller's cancellation drops
        whatever of it is still queued."""
        try:
            async with asyncio.timeout(max(0.0, request.deadline - time.monotonic())):
                return await asyncio.shield(request.future)
        except TimeoutError:
            self._finish(request, _deadline_error(), reason="deadline")
            raise _deadline_error() from None
        except asyncio.CancelledError:
            self._finish(request, None, reason="disconnect")
            raise

    def _finish(self, request: _Request, error: BaseException | None, reason: str = "") -> None:
        """End a request early: take its items out of the queue count and fail (or cancel) its future."""
        self._waiting.discard(request)
        if request.queued:
            self._live -= request.queued
            self._metrics.queue_depth.set(self._live)
            if reason == "deadline":
                self._metrics.dropped_deadline.inc(request.queued)
            elif reason == "disconnect":
                self._metrics.dropped_disconnect.inc(request.queued)
            request.queued = 0
        if not request.future.done():
            if error is None:
                request.future.cancel()
            else:
                request.future.set_exception(error)
                request.future.exception()  # its waiter may be gone (timed out): do not log it as unretrieved

    # ---- the batching loop ----

    async def _loop(self) -> None:
        ran_since_trim = False
        while True:
            was_idle = not self._heap
            if was_idle:  # reserved requests still being tokenized count in _live but cannot run yet
                if self._closing:
                    return
                self._arrived.clear()
                if ran_since_trim and not await self._wait_for_work(IDLE_TRIM_S):
                    # Idle for a while: hand the batches' freed activations back to the OS. Not at every
                    # drain: at low concurrency the queue drains after each request, and trimming then made
                    # the next batch fault its pages back in.
                    ran_since_trim = False
                    await asyncio.get_running_loop().run_in_executor(self._executor, release_free_memory)
                    continue  # requests may have arrived, or stop() been called, meanwhile
                await self._arrived.wait()
                # Idle until now: give concurrent requests max_wait to join this batch.
                if self.max_wait_s > 0 and len(self._heap) < self.max_batch_pairs and not self._closing:
                    self._full.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.max_wait_s):
                            await self._full.wait()
            batch = self._take_batch()
            if batch:
                padded = len(batch) * max(item.length for item in batch)
                await self._execute(batch, inline=was_idle and not self._heap and padded <= self.inline_padded_tokens)
                ran_since_trim = True

    async def _wait_for_work(self, seconds: float) -> bool:
        """True if work arrived (or stop() was called) within `seconds`."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._arrived.wait()
        return self._arrived.is_set()

    def _take_batch(self) -> list[_Item]:
        now = time.monotonic()
        pool: list[_Entry] = []
        while self._heap and len(pool) < self._window:
            entry = heapq.heappop(self._heap)
            request = entry.item.request
            if request.future.done():  # abandoned; counted when it was
                continue
            if request.deadline <= now:
                self._finish(request, _deadline_error(), reason="deadline")
                continue
            pool.append(entry)
        if not pool:
            return []
        anchor = pool[0]  # the lowest tag: always runs
        by_length = sorted(pool, key=lambda e: e.item.length)
        a = next(i for i, e in enumerate(by_length) if e is anchor)
        lo = hi = a
        longest = real = anchor.item.length
        while hi - lo + 1 < self.max_batch_pairs:
            # Grow towards the neighbour closest in length to the anchor while the batch stays within the
            # padded budget and the padding cap; what is left forms the next batch right after this one.
            steps = []
            if lo > 0:
                steps.append((anchor.item.length - by_length[lo - 1].item.length, -1))
            if hi + 1 < len(by_length):
                steps.append((by_length[hi + 1].item.length - anchor.item.length, +1))
            for _, step in sorted(steps):
                length = by_length[lo - 1 if step < 0 else hi + 1].item.length
                width = max(longest, length)
                padded = (hi - lo + 2) * width
                # padded x max(width, 128) <= max_batch_tokens x 128: the token budget up to 128 tokens,
                # the attention budget beyond
                within_budget = padded * max(width, _SHORT) <= self._attention_budget
                if within_budget and real + length >= (1 - self.max_padding_ratio) * padded:
                    lo, hi = (lo - 1, hi) if step < 0 else (lo, hi + 1)
                    longest, real = width, real + length
                    break
            else:
                break
        chosen = by_length[lo : hi + 1]
        for entry in by_length[:lo] + by_length[hi + 1 :]:
            heapq.heappush(self._heap, entry)
        self._vtime = max(self._vtime, max(e.tag for e in chosen))
        items = [e.item for e in chosen]
        for item in items:
            item.request.queued -= 1
            if not item.request.queued:
                self._waiting.discard(item.request)
            self._metrics.queue_seconds.observe(now - item.request.enqueued)
        self._live -= len(items)
        self._metrics.queue_depth.set(self._live)
        return items

    async def _execute(self, items: list[_Item], inline: bool = False) -> None:
        if inline:
            self._forward_here(items)
            return
        self._observe_batch(items)
        started = time.perf_counter()
        self._running = True
        try:
            payloads = [item.payload for item in items]
            outputs = await asyncio.get_running_loop().run_in_executor(self._executor, self._run_batch, payloads)
        except Exception as exc:
            self._fail(items, exc)
            return
        finally:
            self._running = False
        self._deliver(items, outputs, time.perf_counter() - started)

    def _forward_here(self, items: list[_Item]) -> None:
        """A forward pass on the event loop itself (a tiny batch of an idle batcher)."""
        self._observe_batch(items)
        started = time.perf_counter()
        try:
            outputs = self._run_batch([item.payload for item in items])
        except Exception as exc:
            self._fail(items, exc)
            return
        self._deliver(items, outputs, time.perf_counter() - started)

    def _observe_batch(self, items: list[_Item]) -> None:
        m = self._metrics
        width = max(item.length for item in items)
        real = sum(item.length for item in items)
        m.batch_pairs.observe(len(items))
        m.batch_padded_tokens.observe(width * len(items))
        m.batch_padding_ratio.observe(1 - real / (width * len(items)))
        m.batch_tokens.inc(real)

    def _fail(self, items: list[_Item], exc: Exception) -> None:
        """A failed forward pass fails every request with a pair in it."""
        log.error("forward pass of %d pairs failed on model %r", len(items), self.name, exc_info=exc)
        self._metrics.batch_failures.inc()
        self.healthy = False
        error = exc if isinstance(exc, RerankError) else RuntimeFailure("inference failed; see the server log")
        for item in items:
            self._finish(item.request, error)

    def _deliver(self, items: list[_Item], outputs: Any, elapsed: float) -> None:
        if len(outputs) != len(items):
            self._fail(items, RuntimeFailure(f"batch size mismatch: {len(items)} inputs, {len(outputs)} outputs"))
            return
        m = self._metrics
        m.inference_seconds.observe(elapsed)
        m.pairs_scored.inc(len(items))
        self.healthy = True
        self._admission.observe_pass(len(items), elapsed)
        for item, output in zip(items, outputs, strict=True):
            request = item.request
            if request.future.done():
                continue
            request.outputs[item.index] = output
            request.remaining -= 1
            if request.remaining == 0:
                request.future.set_result(request.outputs)


def _shutdown_error() -> NotReady:
    return NotReady("the server is shutting down; retry on another replica")


def _deadline_error() -> DeadlineExceeded:
    return DeadlineExceeded("the request's deadline passed before it was scored; raise timeout_ms or retry")
