"""Question rewording for the reranker's question lists (training only): more question wordings per label.

The student is short of labelled questions (dev MAP rises ~0.024 per doubling of WikiQA's train questions,
see the card notes), and no more exist here. A rewording swaps content words of a question for close
neighbours in all-MiniLM-L6-v2's input word embeddings (mostly inflections and synonyms: formed -> forming,
largest -> biggest, movie -> film). It keeps the question's gold sentences, so the list keeps the original
question's labels and teacher scores. Wh-words and stopwords are never swapped, so the answer type stays.
Measured: rewording half the question lists leaves dev MAP where it was (card notes), so the recipe does not use it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

# Words never swapped: the question's type and grammar, and words whose neighbours are their siblings
# (third -> fourth, june -> july), where a swap would change the answer.
KEPT_WORDS = frozenset({
    "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "is", "are", "was", "were", "be", "been",
    "do", "does", "did", "the", "a", "an", "of", "in", "on", "at", "to", "for", "from", "by", "with", "and", "or",
    "not", "name", "many", "much", "long", "old", "far", "big",
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "first", "second", "third",
    "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth", "last", "next", "january", "february",
    "march", "april", "may", "june", "july", "august", "september", "october", "november", "december", "monday",
    "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "north", "south", "east", "west", "northern",
    "southern", "eastern", "western",
})


def embedding_neighbours(min_cosine: float, per_word: int) -> dict[str, list[str]]:
    """Whole alphabetic words of the uncased vocabulary -> up to `per_word` other such words whose MiniLM
    input embeddings have cosine >= `min_cosine` with it, closest first."""
    from training.hash_init import minilm_dir, minilm_word_embeddings

    table = minilm_word_embeddings()
    vocab = (minilm_dir() / "vocab.txt").read_text(encoding="utf-8").splitlines()
    rows = np.array([i for i, w in enumerate(vocab) if w.isalpha() and len(w) > 2])
    unit = table[rows] / np.linalg.norm(table[rows], axis=1, keepdims=True)
    neighbours: dict[str, list[str]] = {}
    for start in range(0, len(rows), 2048):  # blocks keep the similarity matrix small
        sims = unit[start : start + 2048] @ unit.T
        for offset, row in enumerate(sims):
            row[start + offset] = -1.0  # not itself
            best = np.argsort(-row)[:per_word]
            close = [vocab[rows[j]] for j in best if row[j] >= min_cosine]
            if close:
                neighbours[vocab[rows[start + offset]]] = close
    return neighbours


def cached_neighbours(cache_dir: Path, min_cosine: float = 0.6, per_word: int = 3) -> dict[str, list[str]]:
    path = cache_dir / f"word-neighbours-{min_cosine}-{per_word}.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    neighbours = embedding_neighbours(min_cosine, per_word)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(neighbours), encoding="utf-8")
    return neighbours


class QuestionRewriter:
    """Rewords a question by swapping each swappable word with probability `word_rate` (at least one word
    when any can be swapped). Its own random stream, so runs without rewording draw the same lists."""

    def __init__(self, neighbours: dict[str, list[str]], word_rate: float, seed: int) -> None:
        self.neighbours = neighbours
        self.word_rate = word_rate
        self.rng = random.Random(seed)

    def __call__(self, question: str) -> str:
        words = question.split()
        swappable = [i for i, w in enumerate(words) if w.lower() not in KEPT_WORDS and w.lower() in self.neighbours]
        if not swappable:
            return question
        chosen = [i for i in swappable if self.rng.random() < self.word_rate] or [self.rng.choice(swappable)]
        for i in chosen:
            words[i] = self.rng.choice(self.neighbours[words[i].lower()])
        return " ".join(words)
