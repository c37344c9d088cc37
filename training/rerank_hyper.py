"""The hyper-parameters of the WikiQA listwise stage (rerank-hash-nano's first stage, training.rerank).

A recipe file (training/recipes/*.toml) sets them per stage; every field not set there keeps the default
below. The fields of experiments that did not ship (answer-type rule, layer distillation, rewording, the
labelled-share diagnostic, the PCA init) were removed; their findings are in training/RERANK_CARD_NOTES.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal


@dataclass(frozen=True)
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
    # KL to the cached MiniLM cosine distribution, or to its mix with e5 ("none": gold labels only).
    teacher: Literal["minilm", "minilm+e5", "none"] = "minilm"
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
    # Answer-type contrast: for this many of each step's question lists, the same question asked for another
    # answer type (training.rerank_data.swap_answer_type) must give its gold sentences less of the list's
    # softmax mass, by type_margin nats. Neither teacher reacts to the wh-word (e5's and the cross-encoder's
    # rankings of an article under a swap: Spearman 0.96 / 0.98), so this is the one signal that the
    # answer's type matters; it is offset-free (a per-query score shift cannot satisfy it). Dev MAP over seeds
    # 4/5/6: 0.7260 vs 0.7209 without it, within noise; the student stays nearly blind to the wh-word on dev.
    type_contrast_groups: int = 0
    type_margin: float = 0.5
    type_weight: float = 1.0
    # Share of the cross-encoder teacher (training/cross_teacher.py: MiniLM read as a cross-encoder, scores
    # cross-fitted over article folds) in the question lists' teacher; the bi-encoder mix keeps the rest.
    # It reads question and sentence together, yet is as blind to the wh-word as e5 (see type_contrast_groups).
    cross_weight: float = 0.0
    # Dropout while training (the config's 0.1 otherwise): a 1M-parameter model underfits this task (train
    # MAP stays near dev MAP), so regularising it further costs more than it saves.
    dropout: float = 0.1
    # InsuranceQA train lists per step (a question, <= 2 correct answers, 6 of its first 100 search-engine
    # negatives; training.insuranceqa.TrainLists) on their gold labels alone, at insuranceqa_ce_weight. Learnt
    # beside the WikiQA lists rather than in a second stage after them: v2's second stage drifted from the WikiQA
    # skills whose teachers it lacked (card notes: the three-seed comparison).
    insuranceqa_groups: int = 0
    insuranceqa_ce_weight: float = 1.0
    # KL of the InsuranceQA lists to all-MiniLM-L6-v2's cosine (the train questions and every answer their lists
    # can draw, embedded once and cached), at the WikiQA lists' teacher_temp and kl_weight: their one teacher,
    # and one that saw web search (MS MARCO) in its training. Three seeds: InsuranceQA valid +0.023 (card notes).
    insuranceqa_teacher: bool = False
    insuranceqa_max_length: int = 192  # answers run to ~250 words

    def smoke(self, steps: int | None = None) -> Hyper:
        """The same recipe on a few-step budget (training runs it on 40 questions): every list type kept."""
        return replace(self, steps=steps or 6, q_groups=2, pooled_groups=1, ict_groups=1, eval_every=3, warmup=2,
                       sentence_query_groups=min(self.sentence_query_groups, 1),
                       type_contrast_groups=min(self.type_contrast_groups, 2),
                       insuranceqa_groups=min(self.insuranceqa_groups, 1))
