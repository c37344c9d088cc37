"""HASHRANK_API_KEY: Bearer authentication on every route but the health probes and /metrics."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from app.settings import Settings
from tests.api.conftest import running

KEY = "s3cret-key"
PAIR = {"pairs": [["A man plays a guitar.", "A man is playing a guitar."]]}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": KEY}, 401),  # no scheme
        ({"Authorization": f"Bearer {KEY}"}, 200),
        ({"Authorization": f"bearer {KEY}"}, 200),  # the scheme is case-insensitive
    ],
)
async def test_score_needs_the_key(make_settings: Callable[..., Settings], headers: dict, status: int) -> None:
    async with running(make_settings(api_key=KEY)) as (_, client):
        response = await client.post("/score", json=PAIR, headers=headers)
    assert response.status_code == status, response.text
    if status == 401:
        assert response.json()["error"]["type"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
    else:
        assert 0.5 < response.json()["scores"][0] <= 1.0


async def test_probes_and_metrics_stay_open_and_dialects_keep_their_error_shape(
    make_settings: Callable[..., Settings],
) -> None:
    async with running(make_settings(api_key=KEY)) as (_, client):
        for path in ("/health/live", "/health/ready", "/metrics"):
            assert (await client.get(path)).status_code == 200, path
        assert (await client.get("/info")).status_code == 401
        cohere = await client.post("/v1/rerank", json={"query": "q", "documents": ["d"]})
        tei = await client.post("/rerank", json={"query": "q", "texts": ["d"]})
        metrics = (await client.get("/metrics")).text
    assert cohere.status_code == 401 and "message" in cohere.json()  # Cohere's {"message": ...}
    assert tei.status_code == 401 and tei.json()["error_type"]  # TEI's {"error", "error_type"}
    assert 'status="401"' in metrics


async def test_no_key_configured_means_no_authentication(make_settings: Callable[..., Settings]) -> None:
    async with running(make_settings()) as (_, client):
        assert (await client.post("/score", json=PAIR)).status_code == 200
