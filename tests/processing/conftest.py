"""Shared fixtures for processing tests: tokenizer dirs built offline (cached), transformers' processor."""

import pytest

from lingshu_jax.testing.tokenizer import build_qwen_tokenizer

from .helpers import SMALL_VOCAB, make_hf_processor


@pytest.fixture(scope="session")
def small_tok_dir(tmp_path_factory):
    return build_qwen_tokenizer(str(tmp_path_factory.mktemp("tok_small")), vocab_size=SMALL_VOCAB)


@pytest.fixture(scope="session")
def full_tok_dir(tmp_path_factory):
    return build_qwen_tokenizer(str(tmp_path_factory.mktemp("tok_full")))


@pytest.fixture(scope="session")
def hf_processor(small_tok_dir):
    return make_hf_processor(small_tok_dir, min_pixels=56 * 56, max_pixels=64 * 28 * 28)
