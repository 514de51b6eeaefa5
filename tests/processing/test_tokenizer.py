"""Offline Qwen2 tokenizer builder and our Tokenizer wrapper vs tiktoken (ranks) and transformers."""

import json
import os
import random
import unicodedata

import numpy as np
import pytest

from lingshu_jax.processing.tokenizer import Tokenizer
from lingshu_jax.testing.tokenizer import (
    FULL_VOCAB,
    QWEN2_PATTERN,
    SPECIAL_TOKENS,
    build_qwen_tokenizer,
    load_ranks,
    num_tokens,
)

from .helpers import SMALL_VOCAB

CORPUS = [
    "Hello world",
    "The patient's CT shows a 3.5 cm lesion in the LEFT lobe; they've re-checked it.\n\n  Findings:\tnone",
    "中文医学影像报告：肺部结节，直径12mm。",
    "  leading spaces, trailing   \n\n\n",
    "emoji 😀🩺 numbers 1234567 and x^2+y^2=z^2 {json: [1, 2]}",
    "Café naïve résumé (NFC vs NFD: Cafe\u0301)",
    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What is shown?<|im_end|>\n",
    "I'LL DO it, you'd",
    "\r\n\r\n line\ttab  ",
]


@pytest.fixture(scope="module")
def full_tok(full_tok_dir):
    return Tokenizer.from_pretrained(full_tok_dir)  # 151K ranks: load once per module


def _random_corpus(n=200, seed=0):
    rs = random.Random(seed)
    alphabet = (
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789 \n\t.,;:'\"!?-_()[]{}<>/\\|@#$%^&*+=~`"
        "éüñçøß中文日本語한국어😀🩺"
    )
    return ["".join(rs.choice(alphabet) for _ in range(rs.randint(1, 80))) for _ in range(n)]


def _tiktoken(vocab_size):
    tiktoken = pytest.importorskip("tiktoken")
    ranks = {t: r for t, r in load_ranks().items() if r < vocab_size}
    specials = {c: vocab_size + i for i, (c, _) in enumerate(SPECIAL_TOKENS)}
    return tiktoken.Encoding(
        f"qwen{vocab_size}", pat_str=QWEN2_PATTERN, mergeable_ranks=ranks, special_tokens=specials
    )


def test_full_vocab_gives_qwen_ids_for_hello_world_and_im_start(full_tok):
    tok = full_tok
    assert tok.encode("Hello world") == [9707, 1879]
    assert tok.encode("<|im_start|>user\n") == [151644, 872, 198]
    assert (tok.endoftext_id, tok.im_start_id, tok.im_end_id) == (151643, 151644, 151645)
    assert (tok.vision_start_id, tok.vision_end_id, tok.image_pad_id, tok.video_pad_id) == (
        151652,
        151653,
        151655,
        151656,
    )
    assert len(tok) == num_tokens() == 151665


def test_full_vocab_encodes_like_tiktoken_on_a_corpus(full_tok):
    enc, tok = _tiktoken(FULL_VOCAB), full_tok
    for text in CORPUS + _random_corpus():
        expect = enc.encode(unicodedata.normalize("NFC", text), allowed_special="all")
        assert tok.encode(text) == expect, text


def test_small_vocab_is_the_rank_prefix_with_specials_numbered_from_k(small_tok_dir):
    tok = Tokenizer.from_pretrained(small_tok_dir)
    enc = _tiktoken(SMALL_VOCAB)
    assert len(tok) == SMALL_VOCAB + len(SPECIAL_TOKENS)
    assert tok.encode("<|im_start|>user\n")[0] == SMALL_VOCAB + 1
    assert tok.image_pad_id == SMALL_VOCAB + 12
    for text in CORPUS + _random_corpus(seed=1):
        ids = tok.encode(text)
        assert ids == enc.encode(unicodedata.normalize("NFC", text), allowed_special="all"), text
        assert max(ids) < len(tok)
        assert tok.decode(ids) == unicodedata.normalize("NFC", text)


def test_small_vocab_loads_in_transformers_and_encodes_identically(small_tok_dir):
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(small_tok_dir)
    assert type(hf).__name__ == "Qwen2Tokenizer"
    tok = Tokenizer.from_pretrained(small_tok_dir)
    for text in CORPUS + _random_corpus(seed=2):
        ids = hf(text)["input_ids"]
        assert tok.encode(text) == ids, text
        assert tok.decode(ids) == hf.decode(ids)
        assert tok.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True)
    assert (hf.eos_token_id, hf.pad_token_id, len(hf)) == (tok.eos_token_id, tok.pad_token_id, len(tok))
    assert hf.convert_tokens_to_ids("<|image_pad|>") == tok.image_pad_id


def test_full_vocab_loads_in_transformers_with_qwen_ids(full_tok_dir):
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(full_tok_dir)
    assert hf("Hello world")["input_ids"] == [9707, 1879]
    assert hf("<|im_start|>user\n")["input_ids"] == [151644, 872, 198]
    assert (hf.eos_token_id, hf.pad_token_id) == (151645, 151643)


def test_eos_ids_come_from_generation_config_when_present(small_tok_dir, tmp_path):
    tok = Tokenizer.from_pretrained(small_tok_dir)
    assert tok.eos_token_ids == (tok.im_end_id, tok.endoftext_id)
    d = build_qwen_tokenizer(str(tmp_path), vocab_size=SMALL_VOCAB)
    with open(os.path.join(d, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": [SMALL_VOCAB + 2]}, f)
    assert Tokenizer.from_pretrained(d).eos_token_ids == (SMALL_VOCAB + 2,)
    assert tok.token_id("image_pad") == tok.token_id("<|image_pad|>")
    assert tok.decode(np.array([tok.im_start_id])) == "<|im_start|>"


def test_builds_are_cached_and_bad_sizes_rejected(tmp_path, monkeypatch):
    from lingshu_jax.testing import tokenizer as tokenizer_lib

    build_qwen_tokenizer(str(tmp_path / "a"), vocab_size=SMALL_VOCAB)  # cached from here on (if not before)
    builds = []
    real = tokenizer_lib._tokenizer_json
    monkeypatch.setattr(tokenizer_lib, "_tokenizer_json", lambda *a: builds.append(a) or real(*a))
    build_qwen_tokenizer(str(tmp_path / "b"), vocab_size=SMALL_VOCAB)
    assert builds == []  # the second build of a size copies the cached tokenizer.json, builds nothing
    with open(tmp_path / "a" / "tokenizer.json") as a, open(tmp_path / "b" / "tokenizer.json") as b:
        assert a.read() == b.read()
    with pytest.raises(ValueError, match="vocab_size"):
        build_qwen_tokenizer(str(tmp_path / "c"), vocab_size=100)


def test_missing_tokenizer_json_error_names_the_path(tmp_path):
    with pytest.raises(ValueError, match=str(tmp_path)):
        Tokenizer.from_pretrained(str(tmp_path))
