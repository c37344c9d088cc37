"""Graceful drain and worker death (issue 25 parts 4 and 5), on real `hashrank serve` processes.

Drain: on SIGTERM uvicorn closes the listening socket at once (a readiness probe fails from that moment:
connection refused), every request it had accepted completes (counted), new connections are refused, and
the process exits well within the 30 s grace period (uvicorn's timeout_graceful_shutdown).
Worker death: with --workers 2, kill -9 of a worker under load; uvicorn's supervisor starts a new one,
the service keeps answering, and /metrics drops the dead worker's live gauges (app.metrics.forget_dead_workers)."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from loadtest.servers import Server
from tests.api.conftest import metric
from tests.reliability.conftest import hashrank

GRACE_S = 30
DOCS = [f"document number {i} about cats, dogs and the weather in spring" for i in range(100)]
# Long documents (cut at the model's max_length) keep each request busy for a while, so that requests are
# still in flight when SIGTERM comes.
RANK = {"query": "how long do cats sleep", "documents": [" ".join(DOCS)] * 100}


def in_flight(server: Server, route: str) -> float:
    return metric(httpx.get(f"{server.url}/metrics", timeout=10).text, "hashrank_requests_in_flight", route=route)


def arrived(server: Server, route: str) -> tuple[float, float]:
    """(requests of the route in flight, requests of the route already answered)."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    done = metric(text, "hashrank_requests_total", route=route, status="200")
    return metric(text, "hashrank_requests_in_flight", route=route), done


def test_sigterm_drains_every_accepted_request(tmp_path: Path) -> None:
    accepted = 16
    # Small batches: more forward passes, so the requests stay in flight longer.
    with hashrank(tmp_path, "--log-level", "warning", "--max-batch-pairs", "4", name="drain") as server:
        assert server.proc is not None
        with ThreadPoolExecutor(accepted) as pool:
            # One connection each, so each request is accepted by uvicorn before SIGTERM.
            futures = [pool.submit(httpx.post, f"{server.url}/rank", json=RANK, timeout=60) for _ in range(accepted)]
            deadline = time.monotonic() + 30
            # Every request in the app (in flight, or on a slow shared machine already answered) before SIGTERM.
            while sum(counts := arrived(server, "/rank")) < accepted:
                assert time.monotonic() < deadline, f"the requests never all arrived (in flight, answered: {counts})"
                time.sleep(0.01)
            assert counts[0] >= 1, "every request was answered before SIGTERM: nothing left to drain"
            signalled = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(0.1)
            # From now on: the probe fails and new work is refused (the socket is closed).
            with pytest.raises(httpx.TransportError):
                httpx.get(f"{server.url}/health/ready", timeout=2)
            with pytest.raises(httpx.TransportError):
                httpx.post(f"{server.url}/score", json={"pairs": [["a", "b"]]}, timeout=2)
            statuses = [f.result().status_code for f in futures]
        server.proc.wait(GRACE_S)
        exited = time.monotonic() - signalled
    print(f"drain: {statuses.count(200)}/{accepted} accepted requests answered, exit {exited:.2f} s after SIGTERM")  # noqa: T201
    assert statuses == [200] * accepted  # 0 lost
    # uvicorn shuts down cleanly, then re-raises the signal it caught: the exit status says "terminated".
    assert server.proc.returncode in (0, -signal.SIGTERM) and exited < GRACE_S


def workers_of(server: Server) -> list[int]:
    return [pid for pid, role, *_ in server.processes() if role == "worker" and pid != server.proc.pid]  # type: ignore[union-attr]


def test_a_killed_worker_is_replaced_and_metrics_stay_consistent(tmp_path: Path) -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    with hashrank(tmp_path, "--workers", "2", "--log-level", "warning", env=env, name="workers") as server:
        deadline = time.monotonic() + 60
        while len(workers_of(server)) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        victims = workers_of(server)
        stop = threading.Event()
        outcomes: list[str] = []

        def load() -> None:
            while not stop.is_set():
                try:  # a fresh connection each time: the kernel spreads them over both workers
                    r = httpx.post(f"{server.url}/rank", json={"query": "q", "documents": DOCS[:20]}, timeout=30)
                    outcomes.append(str(r.status_code))
                except httpx.TransportError as exc:
                    outcomes.append(type(exc).__name__)

        threads = [threading.Thread(target=load) for _ in range(6)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.5)
            os.kill(victims[0], signal.SIGKILL)
            killed_at = len(outcomes)
            deadline = time.monotonic() + 60
            while not (len(workers_of(server)) == 2 and victims[0] not in workers_of(server)):
                assert time.monotonic() < deadline, "the killed worker was not replaced"
                time.sleep(0.1)
            replaced_s = 60 - (deadline - time.monotonic())
            # Wait until the new worker serves (its lifespan loads the models), then keep the load going.
            deadline = time.monotonic() + 60
            while outcomes.count("200") < killed_at + 100:
                assert time.monotonic() < deadline, "the service stopped answering"
                time.sleep(0.1)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        failed = [o for o in outcomes if o != "200"]
        print(  # noqa: T201
            f"worker death: {len(outcomes)} requests, {len(failed)} failed ({sorted(set(failed))}), "
            f"replaced in {replaced_s:.1f} s"
        )
        # Only requests the dead worker held can fail: at most one per load thread.
        assert len(failed) <= len(threads), failed
        assert server.proc is not None and server.proc.poll() is None
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
        assert metric(text, "hashrank_requests_in_flight", route="/rank") == 0  # the dead worker's share is gone
        for model in ("rerank-hash-nano", "sts-hash-nano"):
            assert metric(text, "hashrank_queue_depth_pairs", model=model) == 0
        scored = metric(text, "hashrank_pairs_scored_total", model="rerank-hash-nano")
        assert scored >= 20 * outcomes.count("200")  # the dead worker's counts are kept, not lost
        assert not list((tmp_path / "metrics").glob(f"gauge_live*_{victims[0]}.db"))
