"""DynamicBatcher with a fake runtime (timing, ordering, failures); the real model runs in tests/api."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from app.batching import DynamicBatcher
from app.errors import DeadlineExceeded, NotReady, Overloaded, RuntimeFailure
from app.metrics import Metrics


class FakeRuntime:
    """Doubles each payload; records batches; can be held at a gate or made to fail."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.batches: list[list[Any]] = []
        self.delay_s = delay_s
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail_next: Exception | None = None
        self.drop_one = False

    def __call__(self, payloads: list[Any]) -> Sequence[Any]:
        self.entered.set()
        assert self.gate.wait(10), "test gate never opened"
        self.batches.append(list(payloads))
        time.sleep(self.delay_s)
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        out = [2 * p for p in payloads]
        return out[:-1] if self.drop_one else out


def make(runtime: FakeRuntime, **kwargs: Any) -> tuple[DynamicBatcher, Metrics]:
    metrics = Metrics()
    options: dict[str, Any] = {"max_batch_pairs": 8, "max_batch_tokens": 8 * 64, "max_wait_ms": 2.0}
    options.update(kwargs)
    batcher = DynamicBatcher(runtime, metrics.for_model("fake"), name="fake", **options)
    batcher.start()
    return batcher, metrics


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, {"model": "fake", **labels}) or 0.0


def later(seconds: float) -> float:
    return time.monotonic() + seconds


async def hold(runtime: FakeRuntime, batcher: DynamicBatcher) -> asyncio.Task[list[Any]]:
    """Occupy the worker with one pair until runtime.gate is set again."""
    runtime.gate.clear()
    runtime.entered.clear()
    task = asyncio.create_task(batcher.run([0], [1], later(30)))
    assert await asyncio.to_thread(runtime.entered.wait, 5)
    return task


@pytest.mark.parametrize(("max_wait_ms", "max_batch_pairs"), [(0.0, 4), (2.0, 8), (20.0, 32)])
async def test_concurrent_requests_coalesce_and_keep_order(max_wait_ms: float, max_batch_pairs: int) -> None:
    runtime = FakeRuntime(delay_s=0.002)
    batcher, metrics = make(runtime, max_wait_ms=max_wait_ms, max_batch_pairs=max_batch_pairs)
    outs = await asyncio.gather(*(batcher.run([i, i + 1000], [5, 9], later(10)) for i in range(64)))
    await batcher.stop()
    assert outs == [[2 * i, 2 * (i + 1000)] for i in range(64)]
    assert all(len(b) <= max_batch_pairs for b in runtime.batches)
    assert sum(len(b) for b in runtime.batches) == 128
    assert len(runtime.batches) <= 128 // max_batch_pairs + 2  # all arrived in one loop turn
    assert value(metrics, "hashrank_batch_size_pairs_count") == len(runtime.batches)
    assert value(metrics, "hashrank_pairs_scored_total") == 128


async def test_padded_token_budget_bounds_every_batch() -> None:
    runtime = FakeRuntime()
    batcher, _ = make(runtime, max_batch_pairs=32, max_batch_tokens=400)
    blocker = await hold(runtime, batcher)
    lengths = [10, 100, 50, 100, 20, 100, 100, 100, 5, 7]
    task = asyncio.create_task(batcher.run(list(range(10)), lengths, later(10)))
    await asyncio.sleep(0.01)
    runtime.gate.set()
    assert await task == [2 * i for i in range(10)]
    await blocker
    await batcher.stop()
    for batch in runtime.batches[1:]:
        assert len(batch) * max(lengths[i] for i in batch) <= 400


async def test_long_pairs_batch_under_an_attention_budget_too() -> None:
    """Beyond 128 tokens a batch is also bounded by pairs x longest^2 (attention memory): 512-token pairs run
    two at a time under the default 4096-token budget, not eight."""
    runtime = FakeRuntime()
    batcher, _ = make(runtime, max_batch_pairs=32, max_batch_tokens=4096)
    blocker = await hold(runtime, batcher)
    lengths = [512] * 8 + [256] * 8 + [64] * 40
    task = asyncio.create_task(batcher.run(list(range(len(lengths))), lengths, later(10)))
    await asyncio.sleep(0.01)
    runtime.gate.set()
    assert await task == [2 * i for i in range(len(lengths))]
    await blocker
    await batcher.stop()
    sizes = {}
    for batch in runtime.batches[1:]:
        longest = max(lengths[i] for i in batch)
        assert len(batch) * longest * max(longest, 128) <= 4096 * 128
        sizes[longest] = max(sizes.get(longest, 0), len(batch))
    assert sizes == {512: 2, 256: 8, 64: 32}


async def test_length_sorting_keeps_padding_low() -> None:
    runtime = FakeRuntime()
    batcher, metrics = make(runtime, max_batch_pairs=4, max_batch_tokens=10_000)
    blocker = await hold(runtime, batcher)
    # 16 one-pair requests alternating short and long: FIFO batches would be half padding.
    lengths = [8 if i % 2 else 200 for i in range(16)]
    tasks = [asyncio.create_task(batcher.run([i], [lengths[i]], later(10))) for i in range(16)]
    await asyncio.sleep(0.01)
    runtime.gate.set()
    assert [await t for t in tasks] == [[2 * i] for i in range(16)]
    await blocker
    await batcher.stop()
    for batch in runtime.batches[1:]:
        assert len({lengths[i] for i in batch}) == 1, "a batch mixed short and long pairs"
    assert value(metrics, "hashrank_batch_padding_ratio_sum") == 0.0


@pytest.mark.parametrize(("cap", "batches"), [(1.0, [[0, 1, 2, 3]]), (0.25, [[0, 1], [2, 3]])])
async def test_padding_cap_splits_mixed_lengths(cap: float, batches: list[list[int]]) -> None:
    runtime = FakeRuntime()
    batcher, metrics = make(runtime, max_padding_ratio=cap)
    blocker = await hold(runtime, batcher)
    task = asyncio.create_task(batcher.run([0, 1, 2, 3], [10, 11, 100, 98], later(10)))
    await asyncio.sleep(0.01)
    runtime.gate.set()
    assert await task == [0, 2, 4, 6]
    await blocker
    await batcher.stop()
    assert [sorted(b) for b in runtime.batches[1:]] == batches
    worst = 1 - (10 + 11 + 100 + 98) / (4 * 100)
    assert value(metrics, "hashrank_batch_padding_ratio_sum") <= (worst if cap == 1.0 else 0.1)


async def test_big_request_interleaves_with_small_ones() -> None:
    runtime = FakeRuntime(delay_s=0.001)
    batcher, _ = make(runtime, max_batch_pairs=8)
    blocker = await hold(runtime, batcher)
    big = asyncio.create_task(batcher.run(list(range(1000, 1200)), [20] * 200, later(10)))
    await asyncio.sleep(0.005)
    small = asyncio.create_task(batcher.run([7], [20], later(10)))
    await asyncio.sleep(0.005)
    runtime.gate.set()
    await asyncio.gather(big, small, blocker)
    await batcher.stop()
    where = next(i for i, b in enumerate(runtime.batches) if 7 in b)
    assert where <= 2, f"the 1-pair request waited behind {where - 1} batches of the 200-pair one"
    assert len(runtime.batches) >= 200 // 8


async def test_continuous_batching_never_waits_while_a_batch_runs() -> None:
    runtime = FakeRuntime()
    batcher, _ = make(runtime, max_wait_ms=500.0, max_batch_pairs=8)
    blocker = await hold(runtime, batcher)  # the idle wait of 500 ms applies to this first batch only
    queued = asyncio.create_task(batcher.run([1], [4], later(10)))
    await asyncio.sleep(0.01)
    started = time.monotonic()
    runtime.gate.set()
    await queued
    await blocker
    await batcher.stop()
    assert time.monotonic() - started < 0.25, "the batch formed during a forward pass waited for max_wait"


async def test_idle_batcher_waits_max_wait_for_company() -> None:
    runtime = FakeRuntime()
    batcher, _ = make(runtime, max_wait_ms=200.0, max_batch_pairs=8)
    first = asyncio.create_task(batcher.run([1], [4], later(10)))
    await asyncio.sleep(0.02)
    second = asyncio.create_task(batcher.run([2], [4], later(10)))
    await asyncio.gather(first, second)
    await batcher.stop()
    assert runtime.batches == [[1, 2]]


async def test_full_queue_is_rejected_at_once() -> None:
    runtime = FakeRuntime()
    batcher, metrics = make(runtime, max_queue_pairs=4)
    blocker = await hold(runtime, batcher)
    queued = asyncio.create_task(batcher.run([1, 2, 3, 4], [4] * 4, later(10)))
    await asyncio.sleep(0)
    assert batcher.depth == 4
    with pytest.raises(Overloaded) as info:
        await batcher.run([5], [4], later(10))
    assert info.value.retry_after_s >= 1
    assert value(metrics, "hashrank_requests_rejected_total") == 1
    runtime.gate.set()
    assert await queued == [2, 4, 6, 8]
    await blocker
    await batcher.stop()


async def test_a_request_the_queue_cannot_reach_before_its_deadline_is_refused_at_once() -> None:
    runtime = FakeRuntime(delay_s=0.05)
    batcher, metrics = make(runtime)
    assert await batcher.run(list(range(8)), [4] * 8, later(10)) == [2 * i for i in range(8)]  # ~160 pairs/s
    blocker = await hold(runtime, batcher)
    queued = [asyncio.create_task(batcher.run([k] * 40, [4] * 40, later(30))) for k in range(4)]
    await asyncio.sleep(0)
    assert batcher.depth == 160
    # 4 waiting requests run up to 40 pairs each before the last of 40 new ones: ~200 pairs, ~1.25 s.
    started = time.monotonic()
    with pytest.raises(Overloaded, match="would not reach these pairs before the request's deadline") as info:
        await batcher.run([9] * 40, [4] * 40, later(0.5))
    assert time.monotonic() - started < 0.1 and info.value.retry_after_s >= 1
    assert value(metrics, "hashrank_requests_rejected_total") == 1 and batcher.depth == 160
    # Fair queuing puts a 1-pair request after at most 4 pairs: admitted with the same deadline, and in time.
    small = asyncio.create_task(batcher.run([7], [4], later(0.5)))
    await asyncio.sleep(0)
    assert batcher.depth == 161
    runtime.gate.set()
    assert await small == [14]
    assert [len(await q) for q in queued] == [40] * 4
    await blocker
    await batcher.stop()


async def test_expired_deadline_is_dropped_before_inference() -> None:
    runtime = FakeRuntime()
    batcher, metrics = make(runtime)
    blocker = await hold(runtime, batcher)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        await batcher.run([41, 42, 43], [4] * 3, later(0.05))
    assert time.monotonic() - started < 1.0, "the 504 waited for the running batch"
    assert batcher.depth == 0
    with pytest.raises(DeadlineExceeded):  # already past when submitted
        batcher.submit([1], [1], time.monotonic() - 1)
    runtime.gate.set()
    await blocker
    await batcher.stop()
    assert not any(41 in b for b in runtime.batches)
    assert value(metrics, "hashrank_pairs_dropped_total", reason="deadline") == 4


async def test_cancelled_waiter_drops_its_queued_pairs() -> None:
    runtime = FakeRuntime()
    batcher, metrics = make(runtime)
    blocker = await hold(runtime, batcher)
    task = asyncio.create_task(batcher.run([51, 52], [4, 4], later(10)))
    await asyncio.sleep(0.01)
    assert batcher.depth == 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert batcher.depth == 0
    runtime.gate.set()
    await blocker
    assert await batcher.run([3], [4], later(10)) == [6]
    await batcher.stop()
    assert not any(51 in b for b in runtime.batches)
    assert value(metrics, "hashrank_pairs_dropped_total", reason="disconnect") == 2
    assert value(metrics, "hashrank_queue_depth_pairs") == 0


async def test_failed_batch_fails_every_waiter_then_recovers() -> None:
    runtime = FakeRuntime()
    batcher, metrics = make(runtime, max_wait_ms=50.0)
    runtime.fail_next = ValueError("boom")
    results = await asyncio.gather(
        batcher.run([1], [4], later(10)), batcher.run([2, 3], [4, 4], later(10)), return_exceptions=True
    )
    assert len(runtime.batches) == 1
    assert all(isinstance(r, RuntimeFailure) for r in results)
    assert results[0] is results[1], "waiters of one batch get the same error"
    assert not batcher.healthy
    assert value(metrics, "hashrank_batch_failures_total") == 1
    assert await batcher.run([4], [4], later(10)) == [8]
    assert batcher.healthy
    await batcher.stop()


async def test_output_count_mismatch_is_a_runtime_failure() -> None:
    runtime = FakeRuntime()
    runtime.drop_one = True
    batcher, _ = make(runtime)
    with pytest.raises(RuntimeFailure, match="mismatch"):
        await batcher.run([1, 2], [4, 4], later(10))
    await batcher.stop()


async def test_stop_drains_the_queue_then_refuses_work() -> None:
    runtime = FakeRuntime(delay_s=0.001)
    batcher, _ = make(runtime, max_batch_pairs=2)
    tasks = [asyncio.create_task(batcher.run([i], [4], later(10))) for i in range(10)]
    await asyncio.sleep(0)
    await batcher.stop()
    assert [t.result() for t in tasks] == [[2 * i] for i in range(10)]
    with pytest.raises(NotReady):
        await batcher.run([1], [4], later(10))


async def test_empty_request_needs_no_forward_pass() -> None:
    runtime = FakeRuntime()
    batcher, _ = make(runtime)
    assert await batcher.run([], [], later(10)) == []
    await batcher.stop()
    assert runtime.batches == []


async def test_memory_goes_back_only_after_an_idle_spell(monkeypatch: pytest.MonkeyPatch) -> None:
    # Trimming at every drain made the next batch fault its pages back in: +1 ms per request at c=1.
    trims: list[float] = []
    monkeypatch.setattr("app.batching.release_free_memory", lambda: trims.append(time.monotonic()))
    monkeypatch.setattr("app.batching.IDLE_TRIM_S", 0.3)
    batcher, _ = make(FakeRuntime(), max_wait_ms=0)
    for _ in range(5):  # back-to-back requests, each draining the queue
        assert await batcher.run([1], [4], later(5)) == [2]
        drained = time.monotonic()  # the idle spell starts here, at the last drain
        await asyncio.sleep(0.05)
    assert trims == []
    await asyncio.sleep(0.6)
    assert len(trims) == 1 and trims[0] - drained >= 0.25  # IDLE_TRIM_S (0.3) after the drain, not sooner
    assert await batcher.run([3], [4], later(5)) == [6]  # still serving after a trim
    await batcher.stop()


async def test_a_request_that_would_push_a_waiting_one_past_its_deadline_is_refused() -> None:
    """Fair queuing runs a newcomer alongside the requests already waiting, so admitting it delays them too: a
    newcomer that would make the waiting request with the earliest deadline miss it is refused, however far
    its own deadline is; a smaller one that leaves that request in time is admitted."""
    runtime = FakeRuntime(delay_s=0.05)
    batcher, metrics = make(runtime)
    assert await batcher.run(list(range(8)), [4] * 8, later(10)) == [2 * i for i in range(8)]  # ~160 pairs/s
    assert 100 < batcher.pairs_per_s < 170
    blocker = await hold(runtime, batcher)
    waiting = asyncio.create_task(batcher.run([1] * 40, [4] * 40, later(0.45)))  # ~0.25 s of work
    await asyncio.sleep(0)
    assert batcher.depth == 40
    # A newcomer's pairs interleave with the waiting 40: 40 of them put ~80 pairs (~0.5 s) before its last one.
    with pytest.raises(Overloaded, match="would make a request already waiting miss its deadline") as info:
        await batcher.run([2] * 40, [4] * 40, later(30))
    assert info.value.retry_after_s >= 1 and batcher.depth == 40
    assert value(metrics, "hashrank_requests_rejected_total") == 1
    admitted = asyncio.create_task(batcher.run([3] * 8, [4] * 8, later(30)))  # 48 pairs first: ~0.3 s
    await asyncio.sleep(0)
    assert batcher.depth == 48
    runtime.gate.set()
    assert await waiting == [2] * 40  # in time
    assert await admitted == [6] * 8
    await blocker
    await batcher.stop()


async def test_pairs_still_being_tokenized_count_against_admission() -> None:
    """A request is admitted before its pairs are tokenized, and from then on they count in the queue: under
    overload the tokenizer pool holds a queue of its own, and admission that saw only the batcher's queue let
    requests pile up there, to be refused or run out of time after waiting."""
    runtime = FakeRuntime()
    batcher, metrics = make(runtime, max_queue_pairs=4)
    blocker = await hold(runtime, batcher)
    tokenizing = batcher.reserve(3, later(10))
    assert batcher.depth == 3  # nothing is in the queue to run yet; the loop does not spin on it
    with pytest.raises(Overloaded, match="is full"):
        await batcher.run([5, 6], [4, 4], later(10))
    batcher.enqueue(tokenizing, [1, 2, 3], [4, 4, 4])
    abandoned = batcher.reserve(1, later(10))
    batcher.abandon(abandoned, "disconnect")  # its client left while it was tokenized: the place is freed
    assert batcher.depth == 3
    runtime.gate.set()
    assert await batcher.wait(tokenizing) == [2, 4, 6]
    await blocker
    assert batcher.depth == 0
    assert value(metrics, "hashrank_pairs_dropped_total", reason="disconnect") == 1
    await batcher.stop()


async def test_every_waiting_request_is_protected_not_only_the_earliest_deadline() -> None:
    """The request with the earliest deadline may have room to spare while one admitted after it has little:
    a newcomer is checked against the smallest slack of all waiting requests."""
    runtime = FakeRuntime(delay_s=0.05)
    batcher, metrics = make(runtime)
    assert await batcher.run(list(range(8)), [4] * 8, later(10)) == [2 * i for i in range(8)]  # ~160 pairs/s
    blocker = await hold(runtime, batcher)
    earliest = asyncio.create_task(batcher.run([1], [4], later(0.3)))  # 1 pair: done almost at once
    await asyncio.sleep(0)
    tight = asyncio.create_task(batcher.run([2] * 40, [4] * 40, later(0.6)))  # ~0.25 s of work, 0.6 s left
    await asyncio.sleep(0)
    assert batcher.depth == 41
    # 40 more pairs would run alongside `tight` (~0.5 s before its last pair): refused, although they would
    # leave `earliest` in time.
    with pytest.raises(Overloaded, match="would make a request already waiting miss its deadline"):
        await batcher.run([3] * 40, [4] * 40, later(30))
    small = asyncio.create_task(batcher.run([4], [4], later(30)))  # one pair fits in `tight`'s slack
    await asyncio.sleep(0)
    assert batcher.depth == 42 and value(metrics, "hashrank_requests_rejected_total") == 1
    runtime.gate.set()
    assert await earliest == [2] and await tight == [4] * 40 and await small == [8]
    await blocker
    await batcher.stop()


async def test_a_tiny_batch_of_an_idle_batcher_runs_on_the_event_loop_and_anything_else_on_the_worker() -> None:
    """inline_padded_tokens: a lone 1-pair request skips the worker's two thread hand-offs; a batch over the
    limit, or one with work queued behind it, still runs on the worker so the event loop keeps serving I/O."""
    threads: list[int] = []

    class Recording(FakeRuntime):
        def __call__(self, payloads: list[Any]) -> Sequence[Any]:
            threads.append(threading.get_ident())
            return super().__call__(payloads)

    runtime = Recording()
    batcher, _ = make(runtime, max_wait_ms=0.0, inline_padded_tokens=16)
    await asyncio.sleep(0.01)  # the batching loop reaches its idle wait
    loop_thread = threading.get_ident()
    assert await batcher.run([1], [8], later(5)) == [2]  # 8 padded tokens: inline
    assert await batcher.run([1, 2], [8, 9], later(5)) == [2, 4]  # 2 x 9 = 18 padded tokens: the worker
    assert threads == [loop_thread, threads[1]] and threads[1] != loop_thread

    runtime.gate.clear()  # hold the worker so that two small requests queue behind a third
    held = asyncio.create_task(batcher.run([5] * 3, [8] * 3, later(5)))
    await asyncio.to_thread(runtime.entered.wait, 5)
    pending = [asyncio.create_task(batcher.run([k], [8], later(5))) for k in (6, 7)]
    await asyncio.sleep(0.01)
    runtime.gate.set()
    assert await held == [10] * 3 and [await p for p in pending] == [[12], [14]]
    assert all(t != loop_thread for t in threads[2:])  # none of them found the batcher idle
    await batcher.stop()


async def test_a_tiny_request_alone_in_the_server_runs_in_enqueue_and_otherwise_queues() -> None:
    """alone(): the direct lane. A tiny request that is the only one in the server is scored inside enqueue(),
    before its caller awaits; while the server holds others, or a pass runs, or the request is over the inline
    limit, it queues and shares batches as before."""
    runtime = FakeRuntime()
    in_server = {"alone": True}
    batcher, metrics = make(runtime, max_wait_ms=0.0, inline_padded_tokens=16, alone=lambda: in_server["alone"])
    await asyncio.sleep(0.01)

    request = batcher.reserve(1, later(5))
    batcher.enqueue(request, [3], [8])
    assert request.future.done() and await batcher.wait(request) == [6]  # no await between: run in enqueue
    assert batcher.depth == 0 and value(metrics, "hashrank_pairs_scored_total") == 1
    assert value(metrics, "hashrank_direct_passes_total") == 1

    big = batcher.reserve(2, later(5))
    batcher.enqueue(big, [1, 2], [8, 9])  # 18 padded tokens: over the inline limit
    assert not big.future.done() and await batcher.wait(big) == [2, 4]

    in_server["alone"] = False
    crowded = batcher.reserve(1, later(5))
    batcher.enqueue(crowded, [4], [8])
    assert not crowded.future.done() and await batcher.wait(crowded) == [8]

    in_server["alone"] = True
    runtime.gate.clear()  # a pass running on the worker: the next tiny request waits for it
    held = asyncio.create_task(batcher.run([5] * 3, [8] * 3, later(5)))
    await asyncio.to_thread(runtime.entered.wait, 5)
    behind = batcher.reserve(1, later(5))
    batcher.enqueue(behind, [7], [8])
    assert not behind.future.done()
    runtime.gate.set()
    assert await held == [10] * 3 and await batcher.wait(behind) == [14]

    expired = batcher.reserve(1, later(0.05))
    await asyncio.sleep(0.06)  # its deadline passes while it is "tokenized"
    batcher.enqueue(expired, [9], [8])
    with pytest.raises(DeadlineExceeded):
        await batcher.wait(expired)
    assert batcher.depth == 0 and [9] not in runtime.batches
    assert value(metrics, "hashrank_direct_passes_total") == 1  # only the first
    await batcher.stop()
