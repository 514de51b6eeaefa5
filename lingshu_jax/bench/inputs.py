"""The benchmark's model, checkpoint and fixed batch, identical for both frameworks.

Both sides load the same Hugging Face directory (written once by `write_checkpoint`: a random
`Qwen2_5_VLForConditionalGeneration` via `random_hf_model`, then `save_pretrained`): transformers with
`from_pretrained`, ours with `lingshu_jax.from_pretrained` (the streaming HF -> JAX converter). Every
worker rebuilds the same batch from the same seed with `make_inputs`: processor-layout numpy arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lingshu_jax.model.config import ModelConfig, preset

IGNORE = -100
# Standard deviation of the benchmark checkpoint's weight matrices: transformers' `initializer_range`. With the
# test models' 0.1, a 7B-wide model's logits saturate (step-0 loss ~30 vs ln(vocab) ~12) and the two
# frameworks' bf16 rounding differences blow up: measured with `--suite gpu --allow-cpu --preset bench-100m
# --layers 2 --vision-layers 1 --batch 1 --seq 512 --max-new-tokens 8` (bf16 on CPU), last-position logits
# differ by 0.47 of 11.6 and greedy tokens agree 58% at std 0.1, by 0.016 of 2.0 and 98% at 0.02.
BENCH_WEIGHT_STD = 0.02


def bench_config(
    preset_name: str, layers: int | None = None, vision_layers: int | None = None
) -> ModelConfig:
    """A preset, optionally with fewer text layers / vision blocks. Its special token ids are the preset's own
    (ModelConfig checks they index the vocabulary: bench-100m's are those of a Qwen tokenizer cut to
    `BENCH_TOKENIZER_RANKS` ranks, 32746..32767), and `make_inputs` draws text ids below all of them."""
    cfg = preset(preset_name)
    t, v = cfg.text, cfg.vision
    if layers is not None:
        cfg = cfg.replace(text=_replace(t, num_hidden_layers=int(layers)))
    if vision_layers is not None:
        depth = int(vision_layers)
        full = tuple(i for i in v.fullatt_block_indexes if i < depth) or (depth - 1,)
        cfg = cfg.replace(vision=_replace(v, depth=depth, fullatt_block_indexes=full))
    return cfg


def _replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


def write_checkpoint(hf_config: dict[str, Any], out_dir: str, dtype: str = "float32", seed: int = 0) -> str:
    """A random HF checkpoint (every parameter re-randomised, see `random_hf_model`, matrices with std
    `BENCH_WEIGHT_STD`) saved to `out_dir` in `dtype` (the dtype both frameworks then compute in)."""
    from lingshu_jax.testing.hf_models import random_hf_model

    model = random_hf_model(
        ModelConfig.from_hf_dict(hf_config), seed=seed, torch_dtype=dtype, weight_std=BENCH_WEIGHT_STD
    )
    model.save_pretrained(out_dir)
    return out_dir


def make_inputs(
    config: ModelConfig, batch: int, seq: int, image_side: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """One image of `image_side`^2 pixels per row, then random text up to `seq` tokens.

    Row layout: <vision_start> <image_pad> x (image tokens) <vision_end> text ... (no padding).
    Returns processor-layout numpy arrays: input_ids, attention_mask, mm_token_type_ids [B, S] int64,
    pixel_values [B * patches, 1176] float32 (random, standard normal), image_grid_thw [B, 3], and labels
    [B, S] (input_ids with vision tokens set to -100).

    `mm_token_type_ids` (1 = image token) matters: transformers >= 5 computes M-RoPE positions only when
    it is given, and silently falls back to 1-D positions without it (logits then differ from ours)."""
    v = config.vision
    side = v.patch_size * v.spatial_merge_size
    if image_side % side:
        raise ValueError(f"image_side={image_side}: must be a multiple of {side} (patch x merge)")
    g = image_side // v.patch_size
    image_tokens = g * g // v.merge_unit
    if seq < image_tokens + 3:
        raise ValueError(f"seq={seq}: too short for {image_tokens} image tokens plus markers and text")
    rng = np.random.default_rng(seed)
    specials = {
        config.image_token_id,
        config.video_token_id,
        config.vision_start_token_id,
        config.vision_end_token_id,
        config.bos_token_id,
        *config.eos_token_ids,
    }
    high = min(config.text.vocab_size, min(specials))
    ids = rng.integers(0, high, (batch, seq)).astype(np.int64)
    ids[:, 0] = config.vision_start_token_id
    ids[:, 1 : 1 + image_tokens] = config.image_token_id
    ids[:, 1 + image_tokens] = config.vision_end_token_id
    labels = ids.copy()
    labels[:, : 2 + image_tokens] = IGNORE
    grid = np.tile(np.array([[1, g, g]], np.int64), (batch, 1))
    pixels = rng.standard_normal((batch * g * g, v.patch_dim)).astype(np.float32)
    mm_types = (ids == config.image_token_id).astype(np.int64)
    return {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "mm_token_type_ids": mm_types,
        "pixel_values": pixels,
        "image_grid_thw": grid,
        "labels": labels,
    }


def text_tokens(inputs: dict[str, np.ndarray]) -> int:
    """Non-padding tokens of a batch (image placeholder tokens included): what tokens/s counts."""
    return int(np.count_nonzero(inputs["attention_mask"]))


def vision_grids(inputs: dict[str, np.ndarray]) -> list[tuple[int, int, int]]:
    return [tuple(int(x) for x in g) for g in np.asarray(inputs["image_grid_thw"]).reshape(-1, 3)]


def make_text_inputs(
    config: ModelConfig, batch: int, prompt_len: int, seed: int = 1
) -> dict[str, np.ndarray]:
    """Text-only prompts of random ordinary token ids (no padding), for the decode measurement."""
    specials = (
        config.image_token_id,
        config.video_token_id,
        config.vision_start_token_id,
        config.vision_end_token_id,
        config.bos_token_id,
        *config.eos_token_ids,
    )
    high = min(config.text.vocab_size, min(specials))
    ids = np.random.default_rng(seed).integers(0, high, (batch, prompt_len)).astype(np.int64)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "mm_token_type_ids": np.zeros_like(ids)}
