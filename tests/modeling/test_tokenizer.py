"""BERT pair encoding `[CLS] a [SEP] b [SEP]`, both truncation strategies, the truncated flag and padding."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from app.errors import InvalidInput
from app.evaluation import read_sts_b
from app.modeling.tokenizer import PairTokenizer, Truncation
from tests.modeling.builders import TOKENIZER_DIR

CLS, SEP, PAD = 101, 102, 0  # bert-base-uncased ids
LONG_A = "the quick brown fox jumps over the lazy dog " * 3  # 27 word pieces
LONG_B = "a stitch in time saves nine " * 4  # 24 word pieces


@pytest.fixture(scope="module")
def raw() -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(TOKENIZER_DIR / "tokenizer.json"))
    tokenizer.no_padding()  # the package's file pads to 128; PairTokenizer must not inherit that
    tokenizer.no_truncation()
    return tokenizer


def tok(max_length: int) -> PairTokenizer:
    return PairTokenizer.from_dir(TOKENIZER_DIR, max_length)


def pieces(raw: Tokenizer, text: str) -> list[int]:
    return raw.encode(text, add_special_tokens=False).ids


def test_pair_layout_and_token_types(raw: Tokenizer) -> None:
    (pair,) = tok(64).encode_pairs([("Hello world!", "How are you?")])
    a, b = pieces(raw, "Hello world!"), pieces(raw, "How are you?")
    assert pair.input_ids.tolist() == [CLS, *a, SEP, *b, SEP]
    assert pair.token_type_ids.tolist() == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    assert pair.input_ids.dtype == np.int64 and not pair.truncated
    assert raw.decode(pair.input_ids.tolist()) == "hello world! how are you?"  # uncased


def test_longest_first_trims_the_longer_text_first(raw: Tokenizer) -> None:
    (pair,) = tok(32).encode_pairs([(LONG_A, LONG_B)], "longest_first")
    types = pair.token_type_ids.tolist()
    kept_a, kept_b = types.count(0) - 2, types.count(1) - 1
    assert len(pair) == 32 and pair.truncated
    assert abs(kept_a - kept_b) <= 1  # both cut down to an even share of the 29 free slots
    assert pair.input_ids[1 : 1 + kept_a].tolist() == pieces(raw, LONG_A)[:kept_a]  # cut from the end


def test_only_second_keeps_the_query_whole(raw: Tokenizer) -> None:
    (pair,) = tok(32).encode_pairs([(LONG_A, LONG_B)], "only_second")
    a = pieces(raw, LONG_A)
    assert len(pair) == 32 and pair.truncated
    assert pair.input_ids[1 : 1 + len(a)].tolist() == a
    assert pair.token_type_ids.tolist().count(1) == 32 - len(a) - 2


def test_truncated_flag_is_per_pair() -> None:
    flags = [p.truncated for p in tok(32).encode_pairs([("short", "pair"), (LONG_A, LONG_B), ("x", "y")])]
    assert flags == [False, True, False]


def test_only_second_rejects_a_query_longer_than_max_length() -> None:
    with pytest.raises(InvalidInput, match="longest_first"):
        tok(16).encode_pairs([(LONG_A, "b")], "only_second")


def test_truncate_false_rejects_long_pairs() -> None:
    with pytest.raises(InvalidInput, match="pair 1 is longer than max_length=32"):
        tok(32).encode_pairs([("a", "b"), (LONG_A, LONG_B)], truncate=False)


def test_pad_right_pads_with_a_mask() -> None:
    t = tok(64)
    batch = t.pad(t.encode_pairs([("a b c", "d"), ("a", "b")]))
    assert batch.input_ids.shape == batch.attention_mask.shape == batch.token_type_ids.shape == (2, 7)
    assert batch.attention_mask.tolist() == [[1] * 7, [1] * 5 + [0] * 2]
    assert batch.input_ids[1, 5:].tolist() == [PAD, PAD] and batch.token_type_ids[1, 5:].tolist() == [0, 0]


def _by_hugging_face(tok: PairTokenizer, pairs: list[tuple[str, str]], truncation: Truncation) -> list:
    """The Rust tokenizer's own pair template and truncation, one pair at a time: the reference."""
    return [tok._encode_templated([p], truncation, True)[0] for p in pairs]


@pytest.mark.parametrize("max_length", [8, 13, 24, 64, 512])
@pytest.mark.parametrize("truncation", ["longest_first", "only_second"])
def test_hand_framed_pairs_match_the_tokenizer(data_dir: Path, max_length: int, truncation: Truncation) -> None:
    """Pairs are framed and truncated by hand from word pieces (one query with many documents, and pairs with
    different queries): same ids, types and truncated flags as Hugging Face's pair encoding, in every case."""
    tok = PairTokenizer.from_dir(TOKENIZER_DIR, max_length)
    assert tok._frame is not None, "the BERT template was not recognised: pairs would never be framed by hand"
    pairs_b, _ = read_sts_b(data_dir, "train")
    sentences = [a for a, _ in pairs_b[:400]]
    rng = random.Random(max_length)
    for _ in range(12):
        query = " ".join(rng.sample(sentences, rng.choice([1, 1, 2, 6])))
        docs = [" ".join(rng.sample(sentences, rng.choice([1, 2, 5]))) for _ in range(8)] + ["", "x"]
        shared_query = [(query, d) for d in docs]
        own_queries = [(" ".join(rng.sample(sentences, rng.choice([1, 2]))), d) for d in docs]
        for pairs in (shared_query, own_queries, shared_query[:1]):
            try:
                expected = _by_hugging_face(tok, pairs, truncation)
            except InvalidInput:
                with pytest.raises(InvalidInput, match="longer than max_length"):
                    tok.encode_pairs(pairs, truncation)
                continue
            got = tok.encode_pairs(pairs, truncation)
            for e, g in zip(expected, got, strict=True):
                assert g.input_ids.tolist() == e.input_ids.tolist()
                assert g.token_type_ids.tolist() == e.token_type_ids.tolist()
                assert g.truncated == e.truncated


def test_hand_framing_honours_truncate_false() -> None:
    tok = PairTokenizer.from_dir(TOKENIZER_DIR, 12)
    assert len(tok.encode_pairs([("q", "short"), ("q", "also short")], truncate=False)) == 2
    with pytest.raises(InvalidInput, match="pair 1 is longer"):
        tok.encode_pairs([("q", "short"), ("q", "a much longer document than twelve tokens can hold")], truncate=False)


def test_other_pair_templates_are_framed_by_the_tokenizer(raw: Tokenizer) -> None:
    """A tokenizer that frames pairs differently (RoBERTa-style here) keeps Hugging Face's own encoding."""
    from tokenizers.processors import RobertaProcessing

    other = Tokenizer.from_str(raw.to_str())
    other.post_processor = RobertaProcessing(("[SEP]", SEP), ("[CLS]", CLS))
    tok = PairTokenizer(other, 64)
    assert tok._frame is None
    pairs = [("a query", "first doc"), ("a query", "second doc")]
    assert [p.input_ids.tolist() for p in tok.encode_pairs(pairs)] == [other.encode(*p).ids for p in pairs]
