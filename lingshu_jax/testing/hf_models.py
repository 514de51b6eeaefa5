"""Tiny random Hugging Face Qwen2.5-VL checkpoints, built in-process (no downloads).

transformers initialises norms to 1 and biases to 0, which hides a skipped norm or bias; we re-randomise
every parameter so such bugs show in parity tests.
"""

from __future__ import annotations

import json
import os

import numpy as np

from lingshu_jax.model.config import TINY_TOKENIZER_RANKS, ModelConfig, preset

# Matching the Hub's preprocessor_config.json for Qwen2.5-VL, with a smaller max for tiny tests.
PREPROCESSOR_CONFIG = {
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "Qwen2_5_VLProcessor",
    "do_resize": True,
    "do_rescale": True,
    "do_normalize": True,
    "do_convert_rgb": True,
    "rescale_factor": 1 / 255,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "min_pixels": 3136,
    "max_pixels": 200704,
}


def random_hf_model(
    config: ModelConfig, seed: int = 0, torch_dtype: str = "float32", weight_std: float = 0.1
):
    """A `Qwen2_5_VLForConditionalGeneration` with every parameter random: matrices N(0, weight_std), biases
    N(0, 0.5), norm scales N(1, 0.5). The default 0.1 makes small test models' activations large enough to
    expose numerical differences; at 7B width it saturates the logits (see `bench.inputs.BENCH_WEIGHT_STD`)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    hf_config = transformers.Qwen2_5_VLConfig(**config.to_hf_dict())
    hf_config._attn_implementation = "eager"
    model = transformers.Qwen2_5_VLForConditionalGeneration(hf_config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            is_norm = p.ndim == 1 and ("norm" in name or "ln_q" in name)
            p.copy_(torch.randn_like(p) * (0.5 if p.ndim == 1 else weight_std) + (1.0 if is_norm else 0.0))
    return model.to(getattr(torch, torch_dtype))


def write_tiny_hf_dir(
    out_dir: str,
    preset_name: str = "tiny",
    seed: int = 0,
    torch_dtype: str = "float32",
    tokenizer: bool = True,
) -> str:
    """Saves a random tiny model like a Hub checkpoint: weights, config, tokenizer, preprocessor config."""
    config = preset(preset_name)
    model = random_hf_model(config, seed, torch_dtype)
    model.save_pretrained(out_dir)
    with open(os.path.join(out_dir, "preprocessor_config.json"), "w") as f:
        json.dump(PREPROCESSOR_CONFIG, f, indent=2)
    if tokenizer:
        from lingshu_jax.testing.tokenizer import build_qwen_tokenizer

        build_qwen_tokenizer(out_dir, vocab_size=TINY_TOKENIZER_RANKS)
    return out_dir


def random_pixels(grid_thw, seed: int = 0, patch_dim: int = 1176) -> np.ndarray:
    """Random processor-layout pixel rows for the given grids: [sum t*h*w, patch_dim] float32."""
    n = int(np.prod(np.asarray(grid_thw).reshape(-1, 3), axis=1).sum())
    return np.random.default_rng(seed).standard_normal((n, patch_dim)).astype(np.float32)
