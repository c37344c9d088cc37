"""The direct lane on a real `hashrank serve`: a tiny request alone in the server (one connection, one request)
is scored at once, with the same score a queued batch gives it; with other clients connected, nothing is."""

from __future__ import annotations

import threading

import httpx

from loadtest.servers import Server
from tests.api.conftest import STS, metric

PAIRS = [[f"a query about topic {i}", f"a document that may be about topic {i * 7 % 5}"] for i in range(6)]


def counters(client: httpx.Client) -> tuple[float, float]:
    text = client.get("/metrics").text
    direct = metric(text, "hashrank_direct_passes_total", model=STS)
    return direct, metric(text, "hashrank_inference_duration_seconds_count", model=STS)


def test_a_lone_client_is_scored_at_once_with_the_batched_scores(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        direct, passes = counters(client)
        one_by_one = [client.post("/score", json={"pairs": [pair]}).json()["scores"][0] for pair in PAIRS]
        direct_after, passes_after = counters(client)
        batched = client.post("/score", json={"pairs": PAIRS}).json()["scores"]  # 6 pairs: over the inline limit
        _, passes_last = counters(client)
    assert direct_after - direct == len(PAIRS) and passes_after - passes == len(PAIRS)
    assert passes_last - passes_after >= 1  # the batch ran as a pass that was not direct
    assert max(abs(a - b) for a, b in zip(one_by_one, batched, strict=True)) <= 1e-6


def test_with_other_clients_connected_nothing_runs_at_once(server: Server) -> None:
    clients = [httpx.Client(base_url=server.url, timeout=30) for _ in range(16)]
    try:
        for c in clients:  # every connection open before any request: none of them is alone
            assert c.get("/health/live").status_code == 200
        direct, _ = counters(clients[0])
        start = threading.Barrier(len(clients))
        scores: list[float] = [0.0] * len(clients)

        def one(i: int) -> None:
            start.wait()
            scores[i] = clients[i].post("/score", json={"pairs": [PAIRS[i % len(PAIRS)]]}).json()["scores"][0]

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(clients))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        direct_after, _ = counters(clients[0])
    finally:
        for c in clients:
            c.close()
    assert all(0 < s < 1 for s in scores)
    assert direct_after == direct  # they queue, free to share forward passes
