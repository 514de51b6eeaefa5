"""Shared helpers for the conversion tests: read every tensor of a HF dir, rewrite a modified copy."""

from __future__ import annotations

import glob
import json
import os
import shutil

import ml_dtypes  # noqa: F401  (numpy 'bfloat16' for safe_open)
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file


def read_all(hf_dir: str) -> dict[str, np.ndarray]:
    """Every tensor of a HF directory, read with safetensors' own reader (independent of our reader)."""
    out = {}
    for f in sorted(glob.glob(os.path.join(hf_dir, "*.safetensors"))):
        with safe_open(f, framework="numpy") as fh:
            for k in fh.keys():
                assert k not in out, k
                out[k] = fh.get_tensor(k)
    return out


def assert_bit_exact(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    """Same keys, dtypes, shapes and bytes."""
    assert sorted(a) == sorted(b), sorted(set(a) ^ set(b))
    for k in a:
        assert a[k].dtype == b[k].dtype, (k, a[k].dtype, b[k].dtype)
        assert a[k].shape == b[k].shape, (k, a[k].shape, b[k].shape)
        assert a[k].tobytes() == b[k].tobytes(), k


def rewrite(src: str, dst: str, tensors: dict[str, np.ndarray], config: dict | None = None) -> str:
    """A copy of `src` (config.json, assets) whose weights are exactly `tensors` in one model.safetensors."""
    os.makedirs(dst, exist_ok=True)
    for name in os.listdir(src):
        if not name.endswith(".safetensors") and not name.endswith(".index.json"):
            shutil.copyfile(os.path.join(src, name), os.path.join(dst, name))
    save_file(
        {k: np.ascontiguousarray(v) for k, v in tensors.items()},
        os.path.join(dst, "model.safetensors"),
        metadata={"format": "pt"},
    )
    if config is not None:
        with open(os.path.join(dst, "config.json"), "w") as f:
            json.dump(config, f)
    return dst
