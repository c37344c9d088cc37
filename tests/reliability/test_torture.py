"""Input torture on every route and dialect (issue 25 part 7): each hostile body gets a JSON 4xx in the route's
dialect or a correct 200, never a 500 and never a hang, while normal requests running alongside keep
getting exactly their own scores."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from loadtest.servers import Server

QUERY = "how long do cats sleep"
DOCS = ["Cats sleep 12 to 16 hours a day.", "The stock market fell sharply today."]
JSON = {"content-type": "application/json"}


def ours(body: Any) -> bool:
    return set(body) == {"error"} and {"type", "message"} <= set(body["error"])


def tei(body: Any) -> bool:
    return set(body) == {"error", "error_type"}


def results(body: Any) -> int:
    return len(body["results"])


def query_documents(q: Any, d: Any) -> dict[str, Any]:
    return {"query": q, "documents": d}


Dialect = tuple[Callable[[Any, Any], Any], Callable[[Any], int], Callable[[Any], bool]]
DIALECTS: dict[str, Dialect] = {
    # route: (request body from a query and documents, results in a 200, is this the route's error body)
    "/score": (lambda q, d: {"pairs": [[q, x] for x in d]}, lambda b: len(b["scores"]), ours),
    "/rank": (query_documents, results, ours),
    "/rerank": (lambda q, d: {"query": q, "texts": d}, len, tei),
    "/predict": (lambda q, d: {"inputs": [[q, x] for x in d]}, len, tei),
    "/v1/rerank": (query_documents, results, lambda b: set(b) == {"message", "detail"}),
    "/v2/rerank": (query_documents, results, lambda b: set(b) == {"message"}),
}
ROUTES = list(DIALECTS)


def hostile(route: str) -> Iterator[tuple[str, bytes, dict[str, str], int | None]]:
    """(name, raw body, headers, expected result count for a 200 or None when any 4xx is right)."""
    make = DIALECTS[route][0]

    def js(value: Any) -> bytes:
        return json.dumps(value).encode()

    yield "1 MB word", js(make(QUERY, ["x" * 1_000_000])), JSON, 1
    yield "1 MB word query", js(make("q" * 1_000_000, DOCS)), JSON, 2
    yield "10,000 tiny documents", js(make(QUERY, ["a"] * 10_000)), JSON, None
    yield "deep nesting", b"[" * 100_000 + b"]" * 100_000, JSON, None
    nested = b"[" * 50_000 + b"]" * 50_000
    yield "deep nesting in a field", js(make(QUERY, DOCS))[:-1] + b', "z": ' + nested + b"}", JSON, None
    yield "NUL bytes", js(make("q\u0000uery", ["doc\u0000", "\u0000"])), JSON, 2
    yield "NUL bytes raw", js(make(QUERY, DOCS)).replace(b'"', b'"\x00', 1), JSON, None
    yield "lone surrogates", js(make("\ud800", ["\udfff x"])), JSON, None
    invisible = ["\u202eterces\u202c", "\u0645\u0631\u062d\u0628\u0627 \u200f"]  # RTL override, Arabic, RLM
    yield "zero-width and RTL", js(make("\u200b\u200d\u2060" + QUERY, invisible)), JSON, 2
    yield "numbers for strings", js(make(5, [1.5, 7])), JSON, None
    yield "null for strings", js(make(None, [None])), JSON, None
    yield "a list for the body", js([make(QUERY, DOCS)]), JSON, None
    yield "duplicate keys", js(make(QUERY, DOCS))[:-1] + b', "query": 5, "pairs": 5, "inputs": 5}', JSON, None
    yield "no content-type", js(make(QUERY, DOCS)), {}, None
    yield "text/plain", js(make(QUERY, DOCS)), {"content-type": "text/plain"}, None
    yield "form content-type", b"query=a&documents=b", {"content-type": "application/x-www-form-urlencoded"}, None
    yield "gzip body", gzip.compress(js(make(QUERY, DOCS))), {**JSON, "content-encoding": "gzip"}, None
    yield "invalid UTF-8", b'{"query": "\xff\xfe", "documents": ["\xc0"]}', JSON, None
    yield "empty body", b"", JSON, None
    yield "huge number", js(make(QUERY, DOCS))[:-1] + b', "top_n": 1' + b"0" * 5000 + b"}", JSON, None


def check(route: str, name: str, response: httpx.Response, expected: int | None) -> None:
    where = f"{route} {name}: {response.status_code} {response.text[:300]}"
    assert response.headers["content-type"].startswith("application/json"), where
    body = response.json()
    if response.status_code == 200:
        assert expected is not None and DIALECTS[route][1](body) == expected, where
    else:
        assert 400 <= response.status_code < 500 and response.status_code != 408, where
        assert DIALECTS[route][2](body), where


def close(a: Any, b: Any) -> bool:
    """Equal JSON, floats within 1e-6 (a batch-mate may change a score's last bits)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-6
    return bool(a == b)


@pytest.fixture
def bystander(server: Server) -> Iterator[list[str]]:
    """Normal requests in a loop while the torture runs; yields the mismatches it saw (none expected)."""
    stop = threading.Event()
    problems: list[str] = []
    pairs = {"pairs": [["A man is playing a guitar.", "A person plays the guitar."], ["a", "b"]]}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        reference = client.post("/score", json=pairs).json()["scores"]

        def run() -> None:
            while not stop.is_set():
                r = client.post("/score", json=pairs)
                if r.status_code != 200 or r.json()["scores"] != pytest.approx(reference, abs=1e-6):
                    problems.append(f"{r.status_code} {r.text[:200]}")

        thread = threading.Thread(target=run)
        thread.start()
        try:
            yield problems
        finally:
            stop.set()
            thread.join(60)


@pytest.mark.parametrize("route", ROUTES)
def test_hostile_bodies_get_a_dialect_4xx_or_a_correct_200(server: Server, bystander: list[str], route: str) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for name, body, headers, expected in hostile(route):
            check(route, name, client.post(route, content=body, headers=headers), expected)
        # Chunked transfer (no Content-Length): the same answer as a plain body (same request id: Cohere echoes it).
        plain = json.dumps(DIALECTS[route][0](QUERY, DOCS)).encode()
        headers = {**JSON, "x-request-id": "same"}
        chunked = client.post(route, content=iter([plain[:7], plain[7:20], plain[20:]]), headers=headers)
        assert "content-length" not in chunked.request.headers
        check(route, "chunked", chunked, 2)
        assert close(chunked.json(), client.post(route, content=plain, headers=headers).json())
        assert client.get("/health/ready").status_code == 200
    assert bystander == [], bystander[:3]
