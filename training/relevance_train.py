"""The mixed-source relevance stage of rerank-hash-nano (its second stage; training/recipes/rerank-hash-nano.toml):
a trained cross-encoder continued on WikiQA train + InsuranceQA train lists.

Loss per list: softmax cross-entropy of the gold answers' probability mass (lists with a correct answer;
weight ce_weight where the teacher also speaks, 1.0 elsewhere) + kl_weight x KL(teacher softmax || model
softmax) (for the recipe's teacher_sources: SPLADE-tiny's dot products / teacher_temperature) + bce_weight x
pointwise BCE (keeps sigmoid(logit) usable as a score). AdamW, linear warm-up then cosine to 0; an EMA of the
weights is evaluated every eval_every steps on WikiQA dev (answered questions, their article's sentences), on
the first valid_questions InsuranceQA valid questions (correct answers + first 50 negatives) and, with
select_pooled, on the pooled WikiQA dev search (BM25 top-100 over all dev sentences, nDCG@10); the EMA with the
best mean of those is kept. A checkpoint at each evaluation
lets a killed run resume where it stopped.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.nn import functional as F

from app.modeling.bert_hash import BertHashForSequenceClassification
from app.modeling.checkpoint import load_model, save_model
from app.modeling.tokenizer import PairTokenizer
from training import insuranceqa
from training.relevance_lists import InsuranceQALists, ListSampler, PooledWikiQALists, RankList, WikiQALists
from training.relevance_teacher import TeacherScores
from training.rerank_data import ROOT, BM25Index, Question, load_wikiqa_tsv, map_mrr
from training.rerank_eval import TOP_K, ndcg_at, pooled_corpus

log = logging.getLogger("training.relevance_train")
STS_MODEL = ROOT / "models" / "sts-hash-nano"  # the tokenizer files of every student


@dataclass(frozen=True)
class RelevanceRecipe:
    name: str
    steps: int = 1500
    lr: float = 3e-4
    warmup: int = 100
    weight_decay: float = 0.01
    wikiqa_lists: int = 4
    insuranceqa_lists: int = 4
    pooled_lists: int = 0
    insuranceqa_questions: int | None = None  # a prefix of InsuranceQA train (None: all 12,889)
    wikiqa: WikiQALists = WikiQALists()
    pooled: PooledWikiQALists = PooledWikiQALists()
    insurance: InsuranceQALists = InsuranceQALists()
    wikiqa_max_length: int = 96  # tokens per training pair; WikiQA sentences are short
    insuranceqa_max_length: int = 192  # InsuranceQA answers run to ~250 words; 192 tokens keep most of them
    eval_max_length: int = 256
    bce_weight: float = 0.1
    ce_weight: float = 1.0  # on lists the teacher scores; lists without teacher scores get the gold CE at 1.0
    teacher: Literal["splade"] | None = None
    teacher_sources: tuple[str, ...] = ("wikiqa", "insuranceqa")  # which lists get the teacher's KL
    kl_weight: float = 1.0
    # In SPLADE-tiny dot-product units. Its dot products spread with a within-list std of ~6.8 on article lists
    # and ~3.9 on pooled lists (400 train lists each): 2 gives a spread like v1's e5 teacher (cosine / 0.05).
    teacher_temperature: float = 1.0
    select_pooled: bool = False
    # Select only among evaluations that pass the shipping rule against the initial model's own (step 0) figures:
    # ahead on InsuranceQA valid and pooled dev, at most wikiqa_tolerance behind on WikiQA dev MAP.
    guard: bool = False
    wikiqa_tolerance: float = 0.01
    ema_decay: float = 0.998
    eval_every: int = 250
    valid_questions: int = 200
    dev_questions: int | None = None  # a prefix of WikiQA dev's answered questions (None: all 126)
    seed: int = 4

    def smoke(self) -> RelevanceRecipe:
        """The same list mix and selection views on a two-step budget. It drops SPLADE-tiny's KL (its cache of
        every train text takes ~12 minutes) and the shipping rule (two steps rarely pass it): tests cover both
        on their own."""
        return dataclasses.replace(
            self, steps=2, warmup=1, eval_every=2, wikiqa_lists=1, pooled_lists=min(self.pooled_lists, 1),
            insuranceqa_lists=1, insuranceqa_questions=20, valid_questions=2, dev_questions=3, teacher=None,
            guard=False)


def list_loss(
    logits: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor | None, recipe: RelevanceRecipe
) -> torch.Tensor:
    """The recipe's loss for one list's logits (N,): gold CE (if the list has a correct doc) + KL to the
    teacher's softmax (if given) + pointwise BCE."""
    log_p = torch.log_softmax(logits, 0)
    loss = recipe.bce_weight * F.binary_cross_entropy_with_logits(logits, labels)
    if bool(labels.any()):
        ce_weight = recipe.ce_weight if teacher is not None else 1.0
        loss = loss - ce_weight * torch.logsumexp(log_p.masked_fill(labels == 0, float("-inf")), 0)
    if teacher is not None:
        target = torch.softmax(teacher / recipe.teacher_temperature, 0)
        loss = loss + recipe.kl_weight * F.kl_div(log_p, target, reduction="sum")
    return loss


@functools.cache
def _tokenizer(max_length: int) -> PairTokenizer:
    return PairTokenizer.from_dir(STS_MODEL, max_length)


def _tensors(pairs: list[tuple[str, str]], max_length: int) -> tuple[torch.Tensor, ...]:
    tok = _tokenizer(max_length)
    b = tok.pad(tok.encode_pairs(pairs, "only_second"))
    return tuple(torch.from_numpy(x) for x in (b.input_ids, b.attention_mask, b.token_type_ids))


@torch.no_grad()
def score_questions(
    model: BertHashForSequenceClassification, questions: list[Question], max_length: int
) -> list[np.ndarray]:
    model.eval()
    out = []
    for q in questions:
        scores = [model(*_tensors([(q.text, s) for s in q.sentences[i : i + 64]], max_length))[:, 0]
                  for i in range(0, len(q.sentences), 64)]
        out.append(torch.cat(scores).numpy())
    return out


def evaluate(
    model: BertHashForSequenceClassification, recipe: RelevanceRecipe, sets: dict[str, list[Question]]
) -> dict[str, float]:
    res = {}
    for name, qs in sets.items():
        scores = score_questions(model, qs, recipe.eval_max_length)
        if name.endswith("ndcg@10"):
            res[name] = float(np.mean([ndcg_at(s, np.array(q.labels, dtype=np.float64), 10, int(q.doc_id))
                                       for q, s in zip(qs, scores, strict=True)]))
        else:
            res[name] = map_mrr(qs, scores)[0]
    res["selection"] = float(np.mean(list(res.values())))
    return {k: round(v, 4) for k, v in res.items()}


def passes_rule(scores: dict[str, float], base: dict[str, float], recipe: RelevanceRecipe) -> bool:
    """The shipping rule written before runs 3-5: ahead of the initial model on InsuranceQA valid and pooled WikiQA
    dev, no more than wikiqa_tolerance behind on WikiQA dev MAP."""
    pooled = "wikiqa_dev_pooled_ndcg@10"
    return (scores["insuranceqa_valid_map"] > base["insuranceqa_valid_map"]
            and (pooled not in base or scores[pooled] > base[pooled])
            and scores["wikiqa_dev_map"] >= base["wikiqa_dev_map"] - recipe.wikiqa_tolerance)


def pooled_dev(limit: int | None = None) -> list[Question]:
    """WikiQA dev as a search: each answered question's BM25 top-100 over every dev sentence, labels from the
    qrels; doc_id carries the question's number of correct sentences in the corpus (nDCG's ideal)."""
    questions = load_wikiqa_tsv("dev")
    corpus, qrels = pooled_corpus(questions)
    queries = [q for q in questions if q.has_answer and q.qid in qrels][:limit]
    top, _ = BM25Index(corpus).search([q.text for q in queries], TOP_K)
    return [Question(q.qid, q.text, [corpus[i] for i in d], [int(i in qrels[q.qid]) for i in d],
                     doc_id=str(len(qrels[q.qid]))) for q, d in zip(queries, top.tolist(), strict=True)]


def selection_sets(recipe: RelevanceRecipe) -> dict[str, list[Question]]:
    dev = [q for q in load_wikiqa_tsv("dev") if q.has_answer][: recipe.dev_questions]
    sets = {"wikiqa_dev_map": dev, "insuranceqa_valid_map": insuranceqa.questions("valid", 50, recipe.valid_questions)}
    if recipe.select_pooled:
        sets["wikiqa_dev_pooled_ndcg@10"] = pooled_dev(recipe.dev_questions)
    return sets


def train(recipe: RelevanceRecipe, init_from: Path, run_dir: Path, out: Path | None = None) -> dict:
    """Train (or resume) the stage from the model at init_from in run_dir; the best EMA model goes to out
    (default run_dir/model). Returns the report written to training.json."""
    torch.set_num_threads(1)
    torch.manual_seed(recipe.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    model = load_model(init_from)
    model.train()
    sampler = ListSampler(recipe.wikiqa, recipe.pooled, recipe.insurance,
                          (recipe.wikiqa_lists, recipe.pooled_lists, recipe.insuranceqa_lists),
                          recipe.seed, recipe.insuranceqa_questions)
    teacher = TeacherScores() if recipe.teacher == "splade" else None
    sets = selection_sets(recipe)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)

    def lr_at(step: int) -> float:
        if step < recipe.warmup:
            return (step + 1) / recipe.warmup
        return 0.5 * (1 + math.cos(math.pi * (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ckpt = run_dir / "checkpoint.pt"
    step, best, history, elapsed = 0, -1.0, [], 0.0
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=False)
        for part, key in ((model, "model"), (opt, "opt"), (sched, "sched")):
            part.load_state_dict(state[key])
        ema, step, best = state["ema"], state["step"], state["best"]
        history, elapsed = state["history"], state["elapsed"]
        torch.set_rng_state(state["torch_rng"])
        log.info("%s: resumed at step %d (best %.4f)", recipe.name, step, best)
    elif recipe.guard:  # the initial model's own figures: the baseline the rule compares against
        history.append({"step": 0, **evaluate(model, recipe, sets)})
        model.train()
        log.info("%s: %s", recipe.name, history[-1])
    lengths = {"wikiqa": recipe.wikiqa_max_length, "insuranceqa": recipe.insuranceqa_max_length}
    t0, losses = time.time() - elapsed, []
    while step < recipe.steps:
        lists: list[RankList] = sampler.step(step)
        total = torch.zeros(())
        for lst in lists:
            logits = model(*_tensors([(lst.query, d) for d in lst.docs], lengths[lst.source]))[:, 0]
            target = None
            if teacher is not None and lst.source in recipe.teacher_sources:
                target = torch.from_numpy(teacher.scores(lst.source, lst.query, lst.docs))
            total = total + list_loss(logits, torch.tensor(lst.labels, dtype=torch.float32), target, recipe)
        loss = total / len(lists)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            for k, v in model.state_dict().items():
                ema[k].mul_(recipe.ema_decay).add_(v, alpha=1 - recipe.ema_decay)
        losses.append(float(loss.detach()))
        step += 1
        if step % recipe.eval_every == 0 or step == recipe.steps:
            averaged = copy.deepcopy(model)
            averaged.load_state_dict(ema)
            scores = evaluate(averaged, recipe, sets)
            model.train()
            eligible = not recipe.guard or passes_rule(scores, history[0], recipe)
            if eligible and scores["selection"] > best:
                best = scores["selection"]
                torch.save(ema, run_dir / "best.pt")
            torch.save(ema, run_dir / f"ema-{step}.pt")  # every evaluated model, for a later look
            elapsed = time.time() - t0
            history.append({"step": step, "loss": round(float(np.mean(losses[-recipe.eval_every:])), 4), **scores,
                            "seconds": round(elapsed)})
            log.info("%s: %s", recipe.name, history[-1])
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "ema": ema,
                        "step": step, "best": best, "history": history, "elapsed": elapsed,
                        "torch_rng": torch.get_rng_state()}, ckpt)
    if not (run_dir / "best.pt").is_file():
        raise SystemExit(f"{recipe.name}: no evaluation passed the shipping rule; no model written")
    model.load_state_dict(torch.load(run_dir / "best.pt", weights_only=True))
    out = out or run_dir / "model"
    save_model(model, out, tokenizer_dir=STS_MODEL)
    best_step = max((h for h in history if h["step"] and h["selection"] == best), key=lambda h: h["step"])["step"]
    report = {"recipe": _jsonable(dataclasses.asdict(recipe)), "init": _shown(init_from), "best_selection": best,
              "best_step": best_step, "train_seconds": round(elapsed), "history": history}
    if (init_from / "training.json").is_file():  # the earlier stage's own record: the card states both stages
        report["init_training"] = json.loads((init_from / "training.json").read_text())
    for where in (run_dir, out):  # the model directory carries its own record (the card reads it)
        (where / "training.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=str))


def _shown(path: Path) -> str:
    """A path as the record states it: relative to the repository when inside it."""
    return str(path.resolve().relative_to(ROOT)) if path.resolve().is_relative_to(ROOT) else str(path)
