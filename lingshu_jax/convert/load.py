"""One entry point for "a model path": a Hugging Face directory or a lingshu-jax checkpoint.

Training (`config.init_from`), evaluation, generation and `lingshu_jax.from_pretrained` all call
`load_any`, so every tool accepts both kinds of path the same way.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from lingshu_jax.convert import checkpoint as ckpt_lib
from lingshu_jax.convert import keymap
from lingshu_jax.model.config import ModelConfig


def is_checkpoint(path: str) -> bool:
    return os.path.isfile(os.path.join(path, ckpt_lib.MANIFEST))


def resolve(path: str) -> str:
    """A training workdir resolves to its `final/` checkpoint (what a finished stage leaves)."""
    final = os.path.join(path, "final")
    return final if not is_checkpoint(path) and is_checkpoint(final) else path


def _check_exists(path: str) -> None:
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"{path}: no such directory (expected an HF model directory, a lingshu-jax "
            "checkpoint, or the workdir of a finished stage, which holds final/)"
        )


def model_config_from(path: str, **policy) -> ModelConfig:
    _check_exists(path)
    path = resolve(path)
    if is_checkpoint(path):
        return ckpt_lib.config_from_checkpoint(path, **policy)
    return ModelConfig.from_pretrained(path, **policy)


def assets_dir_of(path: str) -> str:
    """Where the tokenizer / processor files of a model path live."""
    path = resolve(path)
    return os.path.join(path, ckpt_lib.ASSETS_DIR) if is_checkpoint(path) else path


def load_any(path: str, dtype=None, shardings=None) -> tuple[ModelConfig, dict, str]:
    """(config, params, assets_dir) from an HF directory or our checkpoint, placed by `shardings`."""
    _check_exists(path)
    path = resolve(path)
    if is_checkpoint(path):
        return (
            ckpt_lib.config_from_checkpoint(path),
            ckpt_lib.load_params(path, shardings, dtype),
            assets_dir_of(path),
        )
    from lingshu_jax.convert.hf_to_jax import hf_to_jax

    return ModelConfig.from_pretrained(path), hf_to_jax(path, dtype=dtype, shardings=shardings), path


def save_checkpoint(
    params, config: ModelConfig, out_dir: str, assets_from: str | None = None, overwrite: bool = True
) -> str:
    """Writes `params` as a lingshu-jax checkpoint (what `load_any` and `scripts/convert.py jax-to-hf` read)."""
    writer = ckpt_lib.ParamsWriter(out_dir, overwrite=overwrite)
    dtypes: dict[str, int] = {}
    for path in keymap.tree_paths(params):
        leaf = keymap.tree_get(params, path)
        host = np.asarray(jax.device_get(leaf)) if jax.process_count() == 1 else _gather(leaf)
        dtypes[host.dtype.name] = dtypes.get(host.dtype.name, 0) + host.size
        writer.add(path, host)
    writer.finalize(config, max(dtypes, key=dtypes.get), {"dtypes": dtypes})
    if assets_from:
        ckpt_lib.copy_hf_assets(assets_from, os.path.join(out_dir, ckpt_lib.ASSETS_DIR))
    return out_dir


def _gather(leaf):
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))


def load_model(
    path: str,
    dtype: str = "float32",
    param_dtype: str | None = None,
    shardings=None,
    mesh=None,
    rules=None,
    **policy,
) -> tuple[ModelConfig, dict, str]:
    """A Hugging Face Qwen2.5-VL/Lingshu directory or one of our checkpoints -> (config, params, source dir).

    dtype: compute dtype; param_dtype: storage dtype (default: same as dtype); `policy`: other ModelConfig
    fields (remat, attention, ...). mesh (+ rules, default `sharding.DEFAULT_RULES`): every parameter goes
    straight onto the mesh with the model's logical shardings, each device reading only its slice;
    `shardings`: an explicit pytree of NamedSharding instead.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such model directory or checkpoint")
    if mesh is not None and shardings is None:
        from lingshu_jax import sharding
        from lingshu_jax.model.vlm import abstract_params

        boxed = abstract_params(model_config_from(path, param_dtype=param_dtype or dtype), boxed=True)
        shardings = sharding.param_shardings(boxed, mesh, rules or sharding.DEFAULT_RULES)
    config, params, source = load_any(path, dtype=param_dtype or dtype, shardings=shardings)
    config = config.replace(dtype=dtype, param_dtype=param_dtype or dtype, **policy)
    return config, params, source
