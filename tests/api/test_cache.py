"""The score cache inside the real app: repeated pairs come back with the very same scores, counted as hits,
and a half-repeated request scores exactly as a server without the cache."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from app.settings import Settings
from tests.api.conftest import STS, metric, running

QUERY = "how long do cats sleep"
DOCS = [f"Cats sleep {h} hours a day, more than most animals." for h in range(10, 30)]


async def rank(client: httpx.AsyncClient, documents: list[str]) -> list[float]:
    r = await client.post("/rank", json={"query": QUERY, "documents": documents, "model": STS})
    assert r.status_code == 200, r.text
    return [s for _, s in sorted((x["index"], x["relevance_score"]) for x in r.json()["results"])]


async def test_repeats_are_hits_with_identical_scores(make_settings: Callable[..., Settings]) -> None:
    async with running(make_settings()) as (_, plain):
        want_first = await rank(plain, DOCS[:10])
        want_mixed = await rank(plain, DOCS[5:15])  # half seen before, half new
    async with running(make_settings(cache_mb=1)) as (_, cached):
        assert await rank(cached, DOCS[:10]) == want_first
        assert await rank(cached, DOCS[:10]) == want_first
        assert await rank(cached, DOCS[5:15]) == want_mixed
        text = (await cached.get("/metrics")).text
    assert metric(text, "hashrank_cache_lookups_total", model=STS, result="hit") == 15
    assert metric(text, "hashrank_cache_lookups_total", model=STS, result="miss") == 15
    assert metric(text, "hashrank_cache_entries", model=STS) == 15


async def test_usage_is_reported_for_cached_pairs(make_settings: Callable[..., Settings]) -> None:
    async with running(make_settings(cache_mb=1)) as (_, client):
        bodies = []
        for _ in range(2):
            r = await client.post("/score", json={"pairs": [["a b c", "d e f"], ["x " * 300, "y"]], "model": STS})
            assert r.status_code == 200, r.text
            bodies.append(r.json())
    assert bodies[0]["scores"] == bodies[1]["scores"]
    assert bodies[0]["usage"] == bodies[1]["usage"]
    assert bodies[1]["usage"]["truncated"] == 1  # a cut pair is still reported as cut when it comes from the cache
