"""Slow and stalled clients (issue 25 part 3, shortened for `make test`: a 1-2 s read timeout instead of 10 s).

A head or body that has not arrived within HASHRANK_READ_TIMEOUT_S gets 408 in the route's dialect and the
connection is closed, counted in hashrank_read_timeouts_total; 1,000 stalled connections do not slow a normal
request; beyond HASHRANK_MAX_CONNECTIONS uvicorn answers 503 and closes."""

from __future__ import annotations

import json
import select
import socket
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loadtest.servers import Server
from tests.api.conftest import metric
from tests.reliability.conftest import hashrank

PAIR = {"pairs": [["A man is playing a guitar.", "A person plays the guitar."]]}
STALLED = 1000


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with hashrank(tmp_path_factory.mktemp("slow"), "--read-timeout-s", "2", name="quick-timeout") as s:
        yield s


def connect(server: Server, sent: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    if sent:
        sock.sendall(sent)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (the test fails on a 30 s hang)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    sock.close()
    return b"".join(chunks)


def split(response: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def body_head(path: str, length: int) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    return head.encode()


@pytest.mark.parametrize(
    ("path", "error_keys"),
    [("/score", {"error"}), ("/rerank", {"error", "error_type"}), ("/v1/rerank", {"message", "detail"})],
)
def test_stalled_head_and_body_get_408_and_are_closed(quick: Server, path: str, error_keys: set[str]) -> None:
    before = httpx.get(f"{quick.url}/metrics").text
    started = time.monotonic()
    head_only = connect(quick, f"POST {path} HTTP/1.1\r\nHost: x\r\n".encode())  # the head never ends
    half_body = connect(quick, body_head(path, 200) + b'{"query": "q", "do')  # the body never ends
    for sock in (head_only, half_body):
        status, headers, body = split(read_all(sock))  # read_all returns once the server has closed
        assert status == 408 and headers["connection"] == "close"
        assert set(json.loads(body)) == error_keys
    assert 1.9 < time.monotonic() - started < 10
    after = httpx.get(f"{quick.url}/metrics").text
    for phase in ("headers", "body"):
        assert metric(after, "hashrank_read_timeouts_total", phase=phase) == 1 + metric(
            before, "hashrank_read_timeouts_total", phase=phase
        )


def test_a_trickled_body_is_cut_at_the_deadline(quick: Server) -> None:
    """One byte every 0.2 s keeps the connection busy but never finishes in time: the deadline is the whole body's."""
    payload = json.dumps(PAIR).encode()
    sock = connect(quick, body_head("/score", len(payload)))
    started = time.monotonic()
    for byte in payload:
        if select.select([sock], [], [], 0.2)[0]:  # the server has answered: stop sending, read it
            break
        sock.sendall(bytes([byte]))
    status, headers, _ = split(read_all(sock))
    assert status == 408 and headers["connection"] == "close"
    assert 1.9 < time.monotonic() - started < 6


def test_thousand_stalled_connections_do_not_slow_a_normal_request(quick: Server) -> None:
    stalled = [connect(quick, b"POST /score HTTP/1.1\r\nHost: x\r\n") for _ in range(STALLED)]
    try:
        latencies = []
        with httpx.Client(base_url=quick.url, timeout=10) as client:
            assert client.post("/score", json=PAIR).status_code == 200
            for _ in range(20):
                started = time.perf_counter()
                assert client.post("/score", json=PAIR).status_code == 200
                latencies.append(time.perf_counter() - started)
        print(  # noqa: T201  (the reliability report reads it)
            f"with {STALLED} stalled connections: /score p50 {statistics.median(latencies) * 1000:.1f} ms, "
            f"max {max(latencies) * 1000:.1f} ms"
        )
        assert statistics.median(latencies) < 0.1
        # Each one gets its 408 and is closed by the server.
        statuses = {split(read_all(sock))[0] for sock in stalled}
        assert statuses == {408}
    finally:
        for sock in stalled:
            sock.close()


def test_beyond_max_connections_uvicorn_refuses_with_503(tmp_path: Path) -> None:
    with hashrank(tmp_path, "--max-connections", "20", "--read-timeout-s", "2", name="capped") as server:
        stalled = [connect(server, b"POST /score HTTP/1.1\r\nHost: x\r\n") for _ in range(20)]
        try:
            time.sleep(0.2)  # let the server accept them all
            refused = read_all(connect(server, b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"))
            assert split(refused)[0] == 503
            for sock in stalled:
                read_all(sock)  # their 408s free the slots
            assert httpx.get(f"{server.url}/health/live").status_code == 200
        finally:
            for sock in stalled:
                sock.close()


def test_the_deadline_counts_from_the_request_head(quick: Server) -> None:
    """timeout_ms runs from when the head arrived: a body that takes longer than that to come is a 504 (the
    client's time is spent), not scored late."""
    for timeout_ms, status in ((300, 504), (5000, 200)):
        payload = json.dumps({**PAIR, "timeout_ms": timeout_ms}).encode()
        head = body_head("/score", len(payload)).replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n")
        sock = connect(quick, head + payload[:10])
        time.sleep(0.6)
        sock.sendall(payload[10:])
        assert split(read_all(sock))[0] == status
