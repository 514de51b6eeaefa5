"""Fixtures for the data pipeline tests: a tiny Qwen tokenizer, a small-image processor, the tiny model
config and the Ops over them."""

import pytest

from lingshu_jax.data import Ops
from lingshu_jax.model.config import preset
from lingshu_jax.processing.image import ImageProcessor
from lingshu_jax.processing.processor import Processor
from lingshu_jax.processing.tokenizer import Tokenizer
from lingshu_jax.testing.tokenizer import build_qwen_tokenizer

TINY_RANKS = 1000


@pytest.fixture(scope="session")
def model_config():
    return preset("tiny")


@pytest.fixture(scope="session")
def processor(tmp_path_factory):
    d = build_qwen_tokenizer(str(tmp_path_factory.mktemp("tok")), vocab_size=TINY_RANKS)
    # Small images: 56x56 .. 112x112 pixels -> 4 .. 16 merged tokens (16 .. 64 patch rows).
    return Processor(Tokenizer.from_pretrained(d), ImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112))


@pytest.fixture(scope="session")
def ops(processor, model_config):
    return Ops.from_processor(processor, model_config)
