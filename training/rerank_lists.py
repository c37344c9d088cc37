"""The per-step lists of the listwise trainer (training.rerank), drawn from WikiQA train and InsuranceQA train.

Each list is (query, candidates, gold, teacher scores); the sampler is deterministic per seed, and its random
state is checkpointed with the model so a resumed run draws what an uninterrupted one would have.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np

from training import insuranceqa
from training.rerank_data import BM25Index, Question, cross_scores_path, e5_embed, minilm_embed
from training.rerank_hyper import Hyper


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
        self.drawn = list(range(len(questions)))
        self.answered = [i for i in self.drawn if questions[i].has_answer]
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
        # InsuranceQA lists draw from their own RNG, so a recipe without them draws exactly what it did before.
        # The smoke run draws from a short negative pool: its teacher then embeds ~300 answers, not 2,000.
        self.insurance = insuranceqa.TrainLists(negative_pool=12) if smoke else insuranceqa.TrainLists()
        self.insurance_questions = self.insurance.questions()[: 20 if smoke else None] if hp.insuranceqa_groups else ()
        self.insurance_rng = random.Random(hp.seed + 1)
        self.insurance_query_emb: dict[str, np.ndarray] = {}
        self.insurance_answer_emb: dict[str, np.ndarray] = {}
        if self.insurance_questions and hp.insuranceqa_teacher:
            self._embed_insuranceqa(cache_dir)

    def state(self) -> dict:
        """The random state a checkpoint keeps, so a resumed run draws what an uninterrupted one would have."""
        return {"rng": self.rng.getstate(), "insurance_rng": self.insurance_rng.getstate()}

    def set_state(self, state: dict) -> None:
        self.rng.setstate(state["rng"])
        if "insurance_rng" in state:  # checkpoints written before InsuranceQA lists existed lack it
            self.insurance_rng.setstate(state["insurance_rng"])

    def _embed_insuranceqa(self, cache_dir: Path) -> None:
        """MiniLM embeddings (cached) of the InsuranceQA train questions and of every answer their lists can draw
        (correct answers and the negative pool), keyed by text."""
        texts = insuranceqa.answer_texts()
        pool = self.insurance.negative_pool
        questions = self.insurance_questions
        q_texts = sorted({q.text for q in questions})
        a_texts = sorted({texts[a] for q in questions for a in (*q.answers, *q.negatives[:pool])})
        t0 = time.time()
        self.insurance_query_emb = dict(zip(q_texts, minilm_embed(q_texts, "iqa-train-q", cache_dir), strict=True))
        self.insurance_answer_emb = dict(zip(a_texts, minilm_embed(a_texts, "iqa-train-a", cache_dir), strict=True))
        self.teacher_seconds += time.time() - t0

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
        for path in files:
            part = np.load(path)
            for qi, si, logit in zip(part["q"], part["s"], part["logit"], strict=True):
                self.cross[int(qi)][int(si)] = float(logit)
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

    def question_list(self, qi: int | None = None) -> tuple[str, list[str], np.ndarray, np.ndarray]:
        """(question, article sentences + BM25 negatives, gold, teacher) of question qi (default: a random one)."""
        hp, rng = self.hp, self.rng
        qi = self.rng.choice(self.drawn) if qi is None else qi
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

    def sentence_query_list(self) -> tuple[str, list[str], np.ndarray]:
        """(pool sentence, 14 of its BM25 top-30 WikiQA train sentences, teacher scores)."""
        rng = self.rng
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
        return self._mix([se[cands] @ qe[qi] for qe, se in self.teachers], cross)

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

    def insuranceqa_list(self) -> tuple[str, list[str], np.ndarray, np.ndarray | None]:
        """(InsuranceQA train question, its sampled answers, gold, MiniLM cosines or None without the teacher)."""
        q = self.insurance_rng.choice(self.insurance_questions)
        query, answers, labels = self.insurance.sample(q, self.insurance_rng)
        teacher = None
        if self.insurance_answer_emb:
            answer_emb = np.stack([self.insurance_answer_emb[a] for a in answers])
            teacher = (answer_emb @ self.insurance_query_emb[query]).astype(np.float32)
        return query, answers, np.asarray(labels, dtype=np.float32), teacher

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
