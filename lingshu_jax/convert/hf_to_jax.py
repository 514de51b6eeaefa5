"""HF Qwen2.5-VL safetensors -> our scanned parameter tree (and optionally an Orbax checkpoint), streaming.

Memory: tensors are read one at a time, in row blocks of 16 MiB, straight into a preallocated leaf
(stacked `[L, ...]` for scanned layers), the transpose and dtype cast done by that one copy; so the host
holds one leaf plus one block. With `shardings`, no leaf is assembled on the host at all: each
device's slice is read from disk by `jax.make_array_from_callback`.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import jax
import numpy as np

from lingshu_jax.convert import checkpoint as ckpt_lib
from lingshu_jax.convert import keymap
from lingshu_jax.convert.keymap import ParamSpec
from lingshu_jax.convert.safetensors_io import ST_TO_NP, SafetensorsReader, TensorInfo, np_dtype
from lingshu_jax.model.config import ModelConfig

Progress = Callable[[str, int], None]  # (hf key, bytes) after each tensor read


def open_checkpoint(hf_dir: str) -> tuple[SafetensorsReader, dict[str, str], ModelConfig]:
    """Reads headers and config; -> (reader, saved-layout key -> stored key, config). Validates nothing else."""
    reader = SafetensorsReader(hf_dir)
    rename: dict[str, str] = {}
    for raw in reader.keys():
        key = keymap.normalize_hf_key(raw)
        if key in rename:
            raise ValueError(f"{hf_dir}: key {raw!r} duplicates {rename[key]!r} (both name {key!r})")
        rename[key] = raw
    keymap.check_architecture([k for k in rename if not keymap.is_ignored_key(k)], hf_dir)
    return reader, rename, ModelConfig.from_pretrained(hf_dir)


def validate(
    reader: SafetensorsReader, rename: dict[str, str], cfg: ModelConfig, specs: list[ParamSpec]
) -> None:
    """ValueError naming the key (and file) for missing / unexpected keys, shape or dtype mismatches."""
    expected = keymap.hf_key_index(specs)
    info = lambda k: reader.entries[rename[k]]
    name = lambda k: os.path.basename(info(k).file)
    missing = [k for k in expected if k not in rename]
    if missing:
        raise ValueError(
            f"{reader.hf_dir}: missing key {missing[0]!r} ({len(missing)} missing in all"
            f"{': ' + ', '.join(missing[1:4]) + ', ...' if len(missing) > 1 else ''}); the config "
            f"(text layers {cfg.text.num_hidden_layers}, vision depth {cfg.vision.depth}, "
            f"tie_word_embeddings={cfg.tie_word_embeddings}) expects it"
        )
    allowed = {"lm_head.weight"} if cfg.tie_word_embeddings else set()
    unexpected = [
        k for k in rename if k not in expected and k not in allowed and not keymap.is_ignored_key(k)
    ]
    if unexpected:
        raise ValueError(
            f"{reader.hf_dir}: unexpected key {unexpected[0]!r} in {name(unexpected[0])} "
            f"({len(unexpected)} unexpected in all); not a Qwen2.5-VL tensor for this config"
        )
    for key, (spec, _) in expected.items():
        ti: TensorInfo = info(key)
        if ti.dtype not in ST_TO_NP:
            raise ValueError(
                f"{ti.file}: key {key!r} has unsupported dtype {ti.dtype}; only {sorted(ST_TO_NP)} are read"
            )
        if tuple(ti.shape) != spec.hf_shape:
            raise ValueError(
                f"{ti.file}: key {key!r} has shape {list(ti.shape)}, expected {list(spec.hf_shape)} "
                f"from config.json (-> {spec.name} {list(spec.shape)})"
            )


def _leaf_dtype(reader, rename, spec: ParamSpec, dtype) -> np.dtype:
    return np_dtype(dtype) if dtype is not None else ST_TO_NP[reader.entries[rename[spec.hf_keys()[0]]].dtype]


def build_leaf(
    reader, rename, spec: ParamSpec, dtype: np.dtype, progress: Progress | None = None
) -> np.ndarray:
    """One leaf on the host: stacked leaves are filled layer by layer into one preallocated array."""
    out = np.empty(spec.shape, dtype)  # [L, ...] or [...]
    for i, key in enumerate(spec.hf_keys()):
        dst = out if spec.num_layers is None else out[i]
        for start, stop, block in reader.iter_blocks(rename[key]):  # bounded blocks of HF rows
            dst[keymap.ours_index(spec, start, stop)] = keymap.to_ours(spec, block)  # transpose + cast
        if progress:
            progress(key, reader.entries[rename[key]].nbytes)
    return out


def _slice_len(s: slice, n: int) -> int:
    return len(range(*s.indices(n)))


def build_sharded_leaf(
    reader, rename, spec: ParamSpec, dtype: np.dtype, sharding, progress: Progress | None = None
) -> jax.Array:
    """One leaf placed by `sharding`; each device's block is read from the mmapped file(s) directly."""
    keys = [rename[k] for k in spec.hf_keys()]

    def layer_block(key: str, idx: tuple[slice, ...]) -> np.ndarray:
        hf_idx, finish = keymap.hf_slice_for(spec, idx)
        return np.asarray(finish(reader.read_slice(key, hf_idx)), dtype)

    def callback(idx: tuple[slice, ...]) -> np.ndarray:
        idx = tuple(idx) + (slice(None),) * (len(spec.shape) - len(idx))
        if spec.num_layers is None:
            return np.ascontiguousarray(layer_block(keys[0], idx))
        layers = range(*idx[0].indices(spec.num_layers))
        block = np.empty(
            (len(layers),) + tuple(_slice_len(s, n) for s, n in zip(idx[1:], spec.layer_shape)), dtype
        )
        for j, i in enumerate(layers):
            block[j] = layer_block(keys[i], idx[1:])
        return block

    arr = jax.make_array_from_callback(spec.shape, sharding, callback)
    if progress:
        for key in spec.hf_keys():
            progress(key, reader.entries[rename[key]].nbytes)
    return arr


def _sharding_for(shardings: Any, spec: ParamSpec):
    if shardings is None or isinstance(shardings, jax.sharding.Sharding):
        return shardings
    try:
        return keymap.tree_get(shardings, spec.path)
    except (KeyError, TypeError):
        raise ValueError(f"shardings: no entry for parameter {spec.name}") from None


def hf_to_jax(
    hf_dir: str,
    out_dir: str | None = None,
    dtype: Any = None,
    shardings: Any = None,
    *,
    return_params: bool = True,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> dict:
    """Converts a HF Qwen2.5-VL directory to our parameter tree.

    Args:
      hf_dir: directory with config.json and model.safetensors or model.safetensors.index.json + shards.
      out_dir: if given, also writes the Orbax checkpoint + lingshu_checkpoint.json + hf_assets/ there.
      dtype: 'float32' / 'bfloat16' / 'float16' (or numpy dtype); None keeps the checkpoint's dtype.
      shardings: pytree of `jax.sharding.Sharding` matching the param tree (or one Sharding for all):
        each device receives only its slice, read straight from the files.
      return_params: False returns `jax.ShapeDtypeStruct`s instead, so that with `out_dir` only one leaf
        is ever alive (what `scripts/convert.py` does).
    Returns:
      The parameter tree (DESIGN.md layout) of jax arrays (or ShapeDtypeStructs, see `return_params`).
    """
    reader, rename, cfg = open_checkpoint(hf_dir)
    specs = keymap.param_specs(cfg)
    validate(reader, rename, cfg, specs)
    writer = ckpt_lib.ParamsWriter(out_dir, overwrite=overwrite) if out_dir else None
    params: dict = {}
    dtypes: dict[str, int] = {}  # dtype name -> parameter count
    for spec in specs:
        dt = _leaf_dtype(reader, rename, spec, dtype)
        dtypes[dt.name] = dtypes.get(dt.name, 0) + spec.size
        sharding = _sharding_for(shardings, spec)
        if writer:
            writer.make_room(spec.size * dt.itemsize)
        if sharding is not None:
            leaf = build_sharded_leaf(reader, rename, spec, dt, sharding, progress)
        else:
            leaf = build_leaf(reader, rename, spec, dt, progress)
        if writer:
            writer.add(spec.path, leaf)
        if return_params:
            keymap.tree_set(params, spec.path, leaf if sharding is not None else jax.device_put(leaf))
        else:
            keymap.tree_set(params, spec.path, jax.ShapeDtypeStruct(spec.shape, dt, sharding=sharding))
        del leaf
    if writer:
        main_dtype = max(dtypes, key=dtypes.get)  # the dtype of most parameters
        writer.finalize(
            cfg,
            main_dtype,
            {
                "dtypes": dtypes,
                "source": os.path.abspath(hf_dir),
                "num_parameters": sum(s.size for s in specs),
            },
        )
        ckpt_lib.copy_hf_assets(hf_dir, os.path.join(out_dir, ckpt_lib.ASSETS_DIR))
    return params
