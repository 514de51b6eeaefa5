"""Our parameter tree (in memory or a converted Orbax checkpoint) -> a HF Qwen2.5-VL directory, streaming.

Writes the Hub layout that `Qwen2_5_VLForConditionalGeneration.save_pretrained` writes (transformers
5.24): keys `model.*`, `visual.*`, `lm_head.weight` (omitted when the embeddings are tied, as
transformers omits it), `model.safetensors` or `model-0000k-of-0000n.safetensors` shards of at most
`max_shard_size` bytes plus `model.safetensors.index.json` ({"metadata": {"total_parameters",
"total_size"}, "weight_map"}), `config.json`, `generation_config.json`, and the tokenizer/processor files.

Memory: leaves are visited one at a time (read from Orbax leaf by leaf when given a checkpoint
directory), un-stacked and transposed back as views, and appended to the open shard in cast row blocks,
so the host holds one leaf plus one 16 MiB block. Reading a leaf back from Orbax costs one more transient
copy of it: tensorstore decodes the leaf's single chunk into a new array (Orbax writes one chunk per leaf;
smaller chunks would move that copy to the save side instead).
"""

from __future__ import annotations

import glob
import json
import math
import os
from typing import Any, Callable, Iterator

import numpy as np

from lingshu_jax.convert import checkpoint as ckpt_lib
from lingshu_jax.convert import keymap
from lingshu_jax.convert.keymap import ParamSpec
from lingshu_jax.convert.safetensors_io import INDEX_FILE, PlannedTensor, ShardedSafetensorsWriter, np_dtype
from lingshu_jax.model.config import ModelConfig

Progress = Callable[[str, int], None]


def _leaf_dtypes_from_tree(
    params: Any, specs: list[ParamSpec], where: str = "params"
) -> dict[keymap.Path, np.dtype]:
    """Checks the tree against the specs (ValueError naming the path) and returns each leaf's dtype."""
    want = {s.path: s for s in specs}
    have = set(keymap.tree_paths(params))
    missing = [p for p in want if p not in have]
    if missing:
        raise ValueError(f"{where}: missing parameter {'/'.join(missing[0])} ({len(missing)} missing in all)")
    extra = sorted(p for p in have if p not in want)
    if extra:
        raise ValueError(
            f"{where}: unexpected parameter {'/'.join(extra[0])} ({len(extra)} unexpected in all); "
            "e.g. lm_head/kernel with tie_word_embeddings=True"
        )
    out = {}
    for path, spec in want.items():
        leaf = keymap.tree_get(params, path)
        if tuple(leaf.shape) != spec.shape:
            raise ValueError(
                f"{where}: {spec.name} has shape {list(leaf.shape)}, expected {list(spec.shape)} "
                f"({spec.hf_key})"
            )
        out[path] = np.dtype(leaf.dtype)
    return out


def _leaf_source(params_or_dir: Any, specs: list[ParamSpec]):
    """-> (dtype per path, iterator of (path, host array)) for a tree or a checkpoint directory."""
    paths = [s.path for s in specs]
    if isinstance(params_or_dir, (str, os.PathLike)):
        meta = ckpt_lib.leaf_metadata(str(params_or_dir))  # shapes and dtypes only, no data
        dtypes = _leaf_dtypes_from_tree(meta, specs, str(params_or_dir))
        return dtypes, ckpt_lib.iter_params(str(params_or_dir), paths)
    dtypes = _leaf_dtypes_from_tree(params_or_dir, specs)

    def gen() -> Iterator[tuple[keymap.Path, np.ndarray]]:
        import jax
        from jax.experimental import multihost_utils

        for p in paths:
            leaf = keymap.tree_get(params_or_dir, p)
            if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:  # multi-host: gather the leaf
                leaf = multihost_utils.process_allgather(leaf, tiled=True)
            yield p, np.asarray(jax.device_get(leaf))

    return dtypes, gen()


def _prepare_out_dir(out_dir: str, overwrite: bool) -> None:
    os.makedirs(out_dir, exist_ok=True)
    old = sorted(
        glob.glob(os.path.join(out_dir, "model*.safetensors")) + glob.glob(os.path.join(out_dir, INDEX_FILE))
    )
    if old and not overwrite:
        raise ValueError(
            f"{old[0]} already exists (pass overwrite=True / --overwrite to replace the weights)"
        )
    for f in old:
        os.remove(f)


def _write_configs(out_dir: str, cfg: ModelConfig, dtype_name: str, asset_dir: str | None) -> None:
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg.to_hf_dict(torch_dtype=dtype_name), f, indent=2)
    copied = ckpt_lib.copy_hf_assets(asset_dir, out_dir) if asset_dir and os.path.isdir(asset_dir) else []
    if "generation_config.json" not in copied:
        eos = list(cfg.eos_token_ids)
        gen = {
            "bos_token_id": cfg.bos_token_id,
            "eos_token_id": eos[0] if len(eos) == 1 else eos,
            "pad_token_id": cfg.bos_token_id,
        }
        with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
            json.dump(gen, f, indent=2)


def _write_leaf(
    writer: ShardedSafetensorsWriter,
    spec: ParamSpec,
    leaf: np.ndarray,
    dtype: np.dtype,
    progress: Progress | None,
) -> None:
    """Un-stacks one leaf into its HF tensors (views; the writer casts and copies them in row blocks)."""
    for i, key in enumerate(spec.hf_keys()):
        writer.write(key, keymap.to_hf(spec, leaf if spec.num_layers is None else leaf[i]))
        if progress:
            progress(key, math.prod(spec.hf_shape) * dtype.itemsize)


def jax_to_hf(
    params_or_dir: Any,
    config: ModelConfig | None,
    out_dir: str,
    source_hf_dir: str | None = None,
    dtype: Any = None,
    max_shard_size: int = 5 * 10**9,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> list[str]:
    """Writes a HF Qwen2.5-VL directory; returns the safetensors files written.

    Args:
      params_or_dir: the parameter tree (jax or numpy leaves, DESIGN.md layout) or a directory written by
        `hf_to_jax(..., out_dir=...)` (read leaf by leaf).
      config: the ModelConfig; None reads it from the checkpoint directory's manifest.
      source_hf_dir: tokenizer/processor/chat-template/generation-config files are copied from here,
        else from the checkpoint's `hf_assets/`.
      dtype: storage dtype of the export ('bfloat16', 'float32', 'float16'); None keeps each leaf's dtype.
      max_shard_size: bytes of tensor data per shard (a single larger tensor gets its own shard).
    """
    is_dir = isinstance(params_or_dir, (str, os.PathLike))
    if config is None:
        if not is_dir:
            raise ValueError("jax_to_hf: config is required when exporting an in-memory parameter tree")
        config = ckpt_lib.config_from_checkpoint(str(params_or_dir))
    specs = keymap.param_specs(config)
    leaf_dtypes, leaves = _leaf_source(params_or_dir, specs)
    out_dt = {s.path: np_dtype(dtype) if dtype is not None else leaf_dtypes[s.path] for s in specs}
    plan = [PlannedTensor(k, s.hf_shape, out_dt[s.path]) for s in specs for k in s.hf_keys()]
    _prepare_out_dir(out_dir, overwrite)
    writer = ShardedSafetensorsWriter(out_dir, plan, max_shard_size)
    by_path = {s.path: s for s in specs}
    for path, leaf in leaves:
        _write_leaf(writer, by_path[path], leaf, out_dt[path], progress)
        del leaf  # before the next leaf is read
    files = writer.close()
    counts: dict[str, int] = {}
    for s in specs:
        counts[out_dt[s.path].name] = counts.get(out_dt[s.path].name, 0) + s.size
    asset_dir = source_hf_dir or (os.path.join(str(params_or_dir), ckpt_lib.ASSETS_DIR) if is_dir else None)
    _write_configs(out_dir, config, max(counts, key=counts.get), asset_dir)
    return files
