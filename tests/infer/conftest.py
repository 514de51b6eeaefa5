"""A tiny random HF checkpoint shared by the generation tests, with transformers' model and ours."""

import numpy as np
import pytest
from PIL import Image

from lingshu_jax.api import from_pretrained
from lingshu_jax.processing import Processor

PAD = 1000  # <|endoftext|> of the tiny tokenizer


def image(w, h, seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def user(*parts):
    content = [
        {"type": "image", "image": p} if isinstance(p, Image.Image) else {"type": "text", "text": p}
        for p in parts
    ]
    return {"role": "user", "content": content}


@pytest.fixture(scope="session")
def ours(tiny_hf_dir):
    return from_pretrained(tiny_hf_dir)


@pytest.fixture(scope="session")
def processor(tiny_hf_dir):
    return Processor.from_pretrained(tiny_hf_dir)


@pytest.fixture(scope="session")
def hf_model(tiny_hf_dir):
    import torch
    import transformers

    return transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(
        tiny_hf_dir, dtype=torch.float32, attn_implementation="eager"
    ).eval()
