"""Loaders for the pair datasets in ../shared/data (formats in each folder's SOURCE.md).

Every loader returns a list of Pair; `score` is the dataset's own label on its own scale (STS-B 0-5,
SICK 1-5, binary 0/1 for paraphrase/answer sets, NLI label index for SNLI). Only the splits named in
shared/data/README.md as training splits may feed training; test splits are for evaluation only.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT.parent / "shared" / "data"

# SNLI labels -> a rough similarity order (used only to describe pairs, never as a target).
_NLI = {"contradiction": 0.0, "neutral": 1.0, "entailment": 2.0}


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    score: float
    group: str = ""  # question id for ranking sets, else ""


def sts_b(split: str, data_dir: Path = DATA_DIR) -> list[Pair]:
    """STS-B 'train' | 'dev' | 'test': gold 0-5 (tab-separated, not CSV-quoted; extra columns ignored)."""
    out = []
    for line in (data_dir / "stsbenchmark" / f"sts-{split}.csv").read_text(encoding="utf-8").splitlines():
        f = line.split("\t")
        if len(f) >= 7:
            out.append(Pair(f[5].strip(), f[6].strip(), float(f[4])))
    return out


def sick(splits: tuple[str, ...], data_dir: Path = DATA_DIR) -> list[Pair]:
    """SICK relatedness 1-5; splits from ('TRAIN', 'TRIAL', 'TEST') (CC BY-NC-SA: non-commercial)."""
    with (data_dir / "sick" / "SICK.txt").open(encoding="utf-8") as fh:
        rows = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [
            Pair(r["sentence_A"], r["sentence_B"], float(r["relatedness_score"]))
            for r in rows
            if r["SemEval_set"] in splits
        ]


def mrpc_train(data_dir: Path = DATA_DIR) -> list[Pair]:
    """MRPC train, binary paraphrase label (the test part overlaps STS-B's MSRpar: never train on it)."""
    lines = (data_dir / "mrpc" / "msr_paraphrase_train.txt").read_text(encoding="utf-8-sig").splitlines()[1:]
    out = []
    for line in lines:
        f = line.split("\t")
        if len(f) == 5:
            out.append(Pair(f[3].strip(), f[4].strip(), float(f[0])))
    return out


def twitter_train(data_dir: Path = DATA_DIR) -> list[Pair]:
    """Twitter URL paraphrase train (lower-cased, tokenised), binary label."""
    d = data_dir / "twitter-url-paraphrase" / "train"
    a = (d / "a.toks").read_text(encoding="utf-8").splitlines()
    b = (d / "b.toks").read_text(encoding="utf-8").splitlines()
    y = (d / "sim.txt").read_text(encoding="utf-8").splitlines()
    return [Pair(x.strip(), z.strip(), float(s)) for x, z, s in zip(a, b, y, strict=True)]


def snli_dev(data_dir: Path = DATA_DIR) -> list[Pair]:
    """SNLI dev (a training split for us), label 0 contradiction / 1 neutral / 2 entailment."""
    d = data_dir / "snli-devtest"
    s1 = (d / "s1.dev").read_text(encoding="utf-8").splitlines()
    s2 = (d / "s2.dev").read_text(encoding="utf-8").splitlines()
    y = (d / "labels.dev").read_text(encoding="utf-8").splitlines()
    return [Pair(a.strip(), b.strip(), _NLI[lab.strip()]) for a, b, lab in zip(s1, s2, y, strict=True)]


def wikiqa_train(data_dir: Path = DATA_DIR) -> list[Pair]:
    """WikiQA train (tokenised .txt: question TAB sentence TAB label); group = question text."""
    out = []
    for line in (data_dir / "wikiqa" / "WikiQA-train.txt").read_text(encoding="utf-8").splitlines():
        f = line.split("\t")
        if len(f) == 3:
            out.append(Pair(f[0].strip(), f[1].strip(), float(f[2]), group=f[0].strip()))
    return out


def wikiqa_eval(split: str, data_dir: Path = DATA_DIR) -> list[Pair]:
    """WikiQA 'dev' | 'test' (.tsv), label 0/1, group = QuestionID."""
    with (data_dir / "wikiqa" / f"WikiQA-{split}.tsv").open(encoding="utf-8") as fh:
        rows = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [Pair(r["Question"], r["Sentence"], float(r["Label"]), group=r["QuestionID"]) for r in rows]


def training_sets(data_dir: Path = DATA_DIR) -> dict[str, list[Pair]]:
    """Every training split we may use, by name."""
    return {
        "stsb": sts_b("train", data_dir),
        "sick": sick(("TRAIN", "TRIAL"), data_dir),
        "mrpc": mrpc_train(data_dir),
        "twitter": twitter_train(data_dir),
        "snli": snli_dev(data_dir),
        "wikiqa": wikiqa_train(data_dir),
    }


# Each set's own labels on the STS-B gold/5 scale, for the multi-dataset "gold" stage. SNLI classes take
# SICK TRAIN+TRIAL's mean relatedness per entailment label (4.58 / 2.97 / 3.61 of 5); binary paraphrase
# labels a rough high/low (MRPC's MSRpar pairs average 3.3/5 in STS-B train).
_SNLI_TO_SCORE = {2.0: 4.58 / 5, 1.0: 2.97 / 5, 0.0: 3.61 / 5}
RANDOM_PAIR_SCORE = 0.02  # STS-B 0 = "completely dissimilar"; two random sentences of one set are rarely more
_BINARY_TO_SCORE = {"mrpc": (0.45, 0.75), "twitter": (0.25, 0.7)}


def gold_stage_pairs(
    seed: int, twitter: int = 8000, random_share: float = 0.35
) -> tuple[list[tuple[str, str]], list[float]]:
    """Every training set's own pairs (Twitter sampled), labels mapped to [0, 1], plus random same-set pairs
    labelled RANDOM_PAIR_SCORE (all the sets' own pairs are related; without unrelated pairs a model
    from scratch has no easy "shares words -> similar" signal to start from); both orders."""
    import random

    sets = training_sets()
    rng = random.Random(seed)
    out: list[tuple[str, str, float]] = []
    out += [(p.a, p.b, p.score / 5) for p in sets["stsb"]]
    out += [(p.a, p.b, p.score / 5) for p in sets["sick"]]
    out += [(p.a, p.b, _SNLI_TO_SCORE[p.score]) for p in sets["snli"]]
    for name in ("mrpc", "twitter"):
        pairs = sets[name] if name == "mrpc" else rng.sample(sets[name], twitter)
        lo, hi = _BINARY_TO_SCORE[name]
        out += [(p.a, p.b, hi if p.score > 0.5 else lo) for p in pairs]
    n_random = int(len(out) * random_share / (1 - random_share))
    names = ["stsb", "sick", "snli", "mrpc", "twitter"]
    for i in range(n_random):
        pool = sets[names[i % len(names)]]
        out.append((rng.choice(pool).a, rng.choice(pool).b, RANDOM_PAIR_SCORE))
    out += [(b, a, y) for a, b, y in out]
    rng.shuffle(out)
    return [(a, b) for a, b, _ in out], [y for _, _, y in out]
