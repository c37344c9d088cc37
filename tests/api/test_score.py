"""POST /score on the shipped model."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.__main__ import main as hashrank
from app.scorer import Scorer
from app.settings import Settings
from tests.api.conftest import STS, assert_error

pytestmark = pytest.mark.asyncio(loop_scope="module")

PAIRS = [
    ("A man is playing a guitar.", "A person plays an instrument."),
    ("A cat sits on the mat.", "The stock market fell sharply today."),
    ("Paris is the capital of France.", "France's capital city is Paris."),
    ("", "an empty first text"),
    ("Ünïcödé ✓ 東京 🚀", "Tokyo 東京 is a city 🚀"),
]


@pytest.fixture(scope="module")
def scorer(sts_model_dir: Path) -> Scorer:
    """The path `hashrank score` takes, with the backend and max_length of the app under test."""
    return Scorer.load(sts_model_dir, Settings().backend, threads=1, max_length=256)


async def test_scores_match_the_scorer_exactly(client: httpx.AsyncClient, scorer: Scorer) -> None:
    r = await client.post("/score", json={"pairs": [list(p) for p in PAIRS]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == STS
    expected = scorer.score(PAIRS)
    np.testing.assert_array_equal(np.array(body["scores"]), expected)
    assert all(0.0 <= s <= 1.0 for s in body["scores"])
    tokens = sum(len(e) for e in scorer.tokenizer.encode_pairs(PAIRS))
    assert body["usage"] == {"pairs": len(PAIRS), "tokens": tokens, "truncated": 0}


async def test_scores_match_the_hashrank_score_command(
    client: httpx.AsyncClient, sts_model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = "".join(json.dumps({"a": a, "b": b}) + "\n" for a, b in PAIRS)
    monkeypatch.setattr("sys.stdin", io.StringIO(lines))
    # --int8: the file the server serves by default (the command line defaults to fp32, the reference).
    assert hashrank(["score", "--model", str(sts_model_dir), "--max-length", "256", "--int8"]) == 0
    cli = [json.loads(line)["score"] for line in capsys.readouterr().out.splitlines()]
    served = (await client.post("/score", json={"pairs": [list(p) for p in PAIRS]})).json()["scores"]
    assert served == cli


async def test_raw_scores_are_the_logits(client: httpx.AsyncClient, scorer: Scorer) -> None:
    r = await client.post("/score", json={"pairs": [list(p) for p in PAIRS], "raw_scores": True})
    np.testing.assert_array_equal(np.array(r.json()["scores"]), scorer.score(PAIRS, raw=True))
    sigmoid = 1 / (1 + np.exp(-np.array(r.json()["scores"])))
    np.testing.assert_allclose(sigmoid, scorer.score(PAIRS), rtol=1e-12)


async def test_object_pairs_order_and_duplicates(client: httpx.AsyncClient) -> None:
    as_lists = await client.post("/score", json={"pairs": [list(p) for p in PAIRS]})
    as_objects = await client.post("/score", json={"pairs": [{"a": a, "b": b} for a, b in reversed(PAIRS)]})
    assert as_objects.json()["scores"] == list(reversed(as_lists.json()["scores"]))
    dup = await client.post("/score", json={"pairs": [list(PAIRS[0])] * 3})
    assert len(set(dup.json()["scores"])) == 1


async def test_empty_list_scores_nothing(client: httpx.AsyncClient) -> None:
    r = await client.post("/score", json={"pairs": []})
    assert r.status_code == 200
    assert r.json() == {"scores": [], "model": STS, "usage": {"pairs": 0, "tokens": 0, "truncated": 0}}


async def test_long_text_is_truncated_and_counted(client: httpx.AsyncClient) -> None:
    long = "word " * 5000
    r = await client.post("/score", json={"pairs": [["short", long], ["short", "short"]]})
    assert r.status_code == 200
    assert r.json()["usage"]["truncated"] == 1
    assert r.json()["usage"]["tokens"] <= 256 + 5
    error = assert_error(
        await client.post("/score", json={"pairs": [["short", long]], "truncate": False}), 422, "validation_error"
    )
    assert error["param"] == "truncate"


async def test_only_second_keeps_the_first_text(client: httpx.AsyncClient) -> None:
    long = "word " * 5000
    ok = await client.post("/score", json={"pairs": [["short query", long]], "truncation": "only_second"})
    assert ok.status_code == 200 and ok.json()["usage"]["truncated"] == 1
    too_long_query = {"pairs": [[long, "doc"]], "truncation": "only_second"}
    assert_error(await client.post("/score", json=too_long_query), 422, "validation_error")


async def test_unknown_model_is_404_listing_names(client: httpx.AsyncClient) -> None:
    error = assert_error(await client.post("/score", json={"pairs": [], "model": "nope"}), 404, "model_not_found")
    assert STS in error["message"] and error["param"] == "model"
    named = await client.post("/score", json={"pairs": [["a", "b"]], "model": STS})
    assert named.status_code == 200
