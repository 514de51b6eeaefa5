"""Tiny random HF Qwen2.5-VL checkpoints (transformers' own save_pretrained), built once per session."""

import json
import os

import pytest

from lingshu_jax.model.config import TINY_TOKENIZER_RANKS, preset
from lingshu_jax.testing.hf_models import PREPROCESSOR_CONFIG, random_hf_model

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
)


@pytest.fixture(scope="session")
def hf_checkpoint(tmp_path_factory):
    """hf_checkpoint(preset_name, dtype) -> (dir, torch model); every parameter re-randomised (seeded)."""
    cache = {}

    def build(preset_name: str = "tiny", dtype: str = "float32"):
        if (preset_name, dtype) not in cache:
            out = str(tmp_path_factory.mktemp(f"hf_{preset_name}_{dtype}"))
            model = random_hf_model(preset(preset_name), seed=len(cache) + 1, torch_dtype=dtype)
            model.save_pretrained(out)
            with open(os.path.join(out, "preprocessor_config.json"), "w") as f:
                json.dump(PREPROCESSOR_CONFIG, f)
            with open(os.path.join(out, "chat_template.jinja"), "w") as f:
                f.write(CHAT_TEMPLATE)
            from lingshu_jax.testing.tokenizer import build_qwen_tokenizer

            build_qwen_tokenizer(out, vocab_size=TINY_TOKENIZER_RANKS)
            cache[preset_name, dtype] = (out, model)
        return cache[preset_name, dtype]

    return build
