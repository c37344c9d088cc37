"""Rewrites of WikiQA train questions that the teachers re-label: more question-shaped queries for distillation.

WikiQA train has 2,118 questions; a 2-layer student fits the teacher on them (train MAP ~ teacher's) yet stays
well below it on dev. Variants of each question over the same article keep the query question-shaped but change
what the answer must contain, and the teacher's scores say how the ranking should move:
- wh-swap: "when was X filmed" -> "where was X filmed" (the answer type changes, the topic does not);
- word drop: one content word removed (the teacher says how much that word mattered);
- keywords: the question without its wh-word and stopwords, as typed into a search box.
"""

from __future__ import annotations

import random

WH_WORDS = ("what", "who", "when", "where", "why", "how", "which")
# "how long", "how many", "what year": a wh-word followed by a word that is not an auxiliary is a two-word
# wh-phrase; it is swapped as a whole for a one-word wh-word ("how long is X" -> "where is X").
AUXILIARIES = frozenset(
    {"is", "are", "was", "were", "do", "does", "did", "can", "could", "should", "would", "will", "has", "have", "had"}
)
STOPWORDS = frozenset({
    "is", "are", "was", "were", "do", "does", "did", "a", "an", "the", "be", "been", "of", "in", "on", "at",
    "to", "for", "by", "with", "from", "and", "or", "as",
    "it", "its", "this", "that", "what", "who", "when", "where", "why", "how", "which", "whom", "whose", "many",
    "much", "?", "'", "``", "''",
})


def _wh_prefix(words: list[str]) -> int:
    """Number of leading words that form the wh-phrase (0 if the question does not start with one)."""
    lowered = [w.lower() for w in words[:2]]
    if not lowered or lowered[0] not in WH_WORDS:
        return 0
    return 2 if len(lowered) == 2 and lowered[1] not in AUXILIARIES | STOPWORDS else 1


def question_variants(question: str, rng: random.Random, swaps: int = 2, drops: int = 2) -> list[str]:
    """Up to swaps + drops + 1 distinct rewrites of a question (none equal to it), deterministic given rng."""
    words = question.split()
    out: list[str] = []
    n_wh = _wh_prefix(words)
    if n_wh:
        others = [w for w in WH_WORDS if w != words[0].lower()]
        for wh in rng.sample(others, min(swaps, len(others))):
            out.append(" ".join([wh, *words[n_wh:]]))
    content = [i for i, w in enumerate(words) if i >= n_wh and w.lower() not in STOPWORDS]
    if len(content) >= 2:
        for i in rng.sample(content, min(drops, len(content))):
            out.append(" ".join(w for j, w in enumerate(words) if j != i))
    keywords = [words[i] for i in content]
    if len(keywords) >= 2:
        out.append(" ".join(keywords))
    seen = {question.lower()}
    unique = []
    for v in out:
        if v.lower() not in seen:
            seen.add(v.lower())
            unique.append(v)
    return unique
