"""A random HF Qwen2.5-VL checkpoint written straight from numpy (no torch model is built).

For benchmarks and memory tests: every tensor of `param_specs(cfg)` under its Hub key and HF shape, filled
with random values one tensor at a time through the streaming writer, so writing a multi-GB checkpoint
costs one tensor of memory.
"""

from __future__ import annotations

import os

import numpy as np

from lingshu_jax.convert import keymap
from lingshu_jax.convert.safetensors_io import PlannedTensor, ShardedSafetensorsWriter, np_dtype
from lingshu_jax.model.config import ModelConfig


def write_random_hf_checkpoint(
    cfg: ModelConfig, out_dir: str, dtype="float32", seed: int = 0, max_shard_size: int = 5 * 10**9
) -> dict:
    """Writes config.json + safetensors; returns {"bytes", "largest_hf_tensor", "largest_leaf", "files"}."""
    os.makedirs(out_dir, exist_ok=True)
    dt = np_dtype(dtype)
    specs = keymap.param_specs(cfg)
    plan = [PlannedTensor(k, s.hf_shape, dt) for s in specs for k in s.hf_keys()]
    writer = ShardedSafetensorsWriter(out_dir, plan, max_shard_size)
    rng = np.random.default_rng(seed)
    for t in plan:
        x = rng.standard_normal(t.shape, dtype=np.float32)
        x *= 0.02
        writer.write(t.key, x.astype(dt, copy=False))
        del x
    files = writer.close()
    cfg.save_pretrained(out_dir, torch_dtype=dt.name)
    return {
        "bytes": sum(t.nbytes for t in plan),
        "largest_hf_tensor": max(t.nbytes for t in plan),
        "largest_leaf": max(s.size for s in specs) * dt.itemsize,
        "files": files,
    }
