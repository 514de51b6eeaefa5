"""Orbax layout of a converted checkpoint, written leaf by leaf and read whole or leaf by leaf.

```
out_dir/
  lingshu_checkpoint.json   format version, ModelConfig HF dict, layout "scanned" (layer axis 0), dtype
  params/                   Orbax checkpoint (v1 partial-save layout); the PyTree itself is params/state,
                            readable by plain `ocp.StandardCheckpointer().restore(out_dir/params/state)`
  hf_assets/                tokenizer / processor / chat template / generation config of the source
```
Writing uses `orbax.checkpoint.v1.partial.save` once per leaf, so only one leaf is in host memory at a
time. Two Orbax defaults would each hold a second full copy of the leaf while it is written, so they
are turned off: host arrays are not deep-copied (the save is synchronous and we never mutate the array)
and zstd compression is off (model weights hardly compress, and the compressor buffers a whole chunk).
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any, Iterator

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint.experimental import v1 as ocp_v1

from lingshu_jax.convert import keymap
from lingshu_jax.model.config import ModelConfig

FORMAT = "lingshu-jax-params"
FORMAT_VERSION = 1
MANIFEST = "lingshu_checkpoint.json"
PARAMS_DIR = "params"
PYTREE_DIR = "state"  # the checkpointable name orbax v1 gives the saved PyTree
ASSETS_DIR = "hf_assets"
# Files that make an exported HF directory complete (loaded by transformers' processor/tokenizer).
HF_ASSET_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "chat_template.json",
    "chat_template.jinja",
    "generation_config.json",
)


def _save_context() -> ocp_v1.Context:
    ctx = ocp_v1.Context()
    ctx.memory.deepcopy_host_arrays = False
    ctx.array.saving.use_compression = False
    return ctx


class ParamsWriter:
    """Streams leaves into `out_dir/params`; `finalize()` commits it and writes the manifest.

    Leaves are buffered up to `flush_bytes`, so the many small leaves (norms, biases) share one Orbax save
    call while a large leaf is saved alone: buffered memory <= max(flush_bytes, one leaf).
    """

    def __init__(self, out_dir: str, overwrite: bool = False, flush_bytes: int = 32 << 20):
        self.out_dir = os.path.abspath(out_dir)
        self.path = os.path.join(self.out_dir, PARAMS_DIR)
        for p in (self.path, self.path + ".partial_save"):
            if os.path.exists(p):
                if not overwrite:
                    raise ValueError(f"{p} already exists (pass overwrite=True / --overwrite to replace it)")
                shutil.rmtree(p)
        os.makedirs(self.out_dir, exist_ok=True)
        self._ctx = _save_context()
        self._flush_bytes = flush_bytes
        self._pending: dict = {}
        self._pending_bytes = 0
        self.num_leaves = 0

    def add(self, path: keymap.Path, value: Any) -> None:
        """Queues one leaf (numpy or jax array) under its tree path; saves when the buffer is full."""
        nbytes = value.size * np.dtype(value.dtype).itemsize
        self.make_room(nbytes)
        keymap.tree_set(self._pending, path, value)
        self._pending_bytes += nbytes
        self.num_leaves += 1
        if self._pending_bytes >= self._flush_bytes:
            self.flush()

    def make_room(self, nbytes: int) -> None:
        """Saves the buffer now if a leaf of `nbytes` would overflow it; call it before building that leaf
        so a large leaf is never alive beside a full buffer."""
        if self._pending_bytes + nbytes > self._flush_bytes:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            with self._ctx:
                ocp_v1.partial.save(self.path, self._pending)
        self._pending, self._pending_bytes = {}, 0

    def finalize(self, cfg: ModelConfig, dtype: str, extra: dict | None = None) -> None:
        self.flush()
        with self._ctx:
            ocp_v1.partial.finalize(self.path)
        write_manifest(self.out_dir, cfg, dtype, extra)


def write_manifest(out_dir: str, cfg: ModelConfig, dtype: str, extra: dict | None = None) -> str:
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "layout": "scanned",
        "layer_axis": 0,
        "dtype": dtype,
        "params_path": f"{PARAMS_DIR}/{PYTREE_DIR}",
        "model_config": cfg.to_hf_dict(torch_dtype=dtype),
    }
    manifest.update(extra or {})
    f = os.path.join(out_dir, MANIFEST)
    with open(f, "w") as fh:
        json.dump(manifest, fh, indent=2)
    return f


def read_manifest(ckpt_dir: str) -> dict:
    f = os.path.join(ckpt_dir, MANIFEST)
    if not os.path.exists(f):
        raise ValueError(
            f"{f}: missing (not a lingshu-jax converted checkpoint; run `scripts/convert.py hf-to-jax`)"
        )
    with open(f) as fh:
        manifest = json.load(fh)
    if manifest.get("format") != FORMAT or manifest.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{f}: format {manifest.get('format')!r} version {manifest.get('format_version')!r}; "
            f"this code reads {FORMAT!r} <= {FORMAT_VERSION}"
        )
    if manifest.get("layout") != "scanned" or manifest.get("layer_axis") != 0:
        raise ValueError(
            f"{f}: layout {manifest.get('layout')!r}; only 'scanned' (layer axis 0) is supported"
        )
    return manifest


def config_from_checkpoint(ckpt_dir: str, **policy) -> ModelConfig:
    return ModelConfig.from_hf_dict(read_manifest(ckpt_dir)["model_config"], **policy)


def pytree_path(ckpt_dir: str) -> str:
    return os.path.join(os.path.abspath(ckpt_dir), read_manifest(ckpt_dir)["params_path"])


def leaf_metadata(ckpt_dir: str) -> dict:
    """Nested dict path -> orbax ArrayMetadata (shape, dtype), without reading any array."""
    return ocp.PyTreeCheckpointHandler().metadata(epath.Path(pytree_path(ckpt_dir))).tree


def _restore(ckpt_dir: str, item: dict, restore_args: dict, partial: bool = False) -> dict:
    args = ocp.args.PyTreeRestore(item=item, restore_args=restore_args, partial_restore=partial)
    return ocp.PyTreeCheckpointHandler().restore(epath.Path(pytree_path(ckpt_dir)), args=args)


def load_params(ckpt_dir: str, shardings: Any = None, dtype: Any = None) -> dict:
    """The whole parameter tree as jax arrays, placed by `shardings` (pytree of `jax.sharding.Sharding`
    matching the tree, or one Sharding for all leaves); default: the first local device."""
    meta = leaf_metadata(ckpt_dir)
    default = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    item, args = {}, {}
    for path in keymap.tree_paths(meta):
        m = keymap.tree_get(meta, path)
        if shardings is None or isinstance(shardings, jax.sharding.Sharding):
            s = shardings or default
        else:
            s = keymap.tree_get(shardings, path)
        dt = np.dtype(dtype) if dtype is not None else m.dtype
        keymap.tree_set(item, path, jax.ShapeDtypeStruct(tuple(m.shape), dt, sharding=s))
        keymap.tree_set(args, path, ocp.ArrayRestoreArgs(sharding=s, global_shape=tuple(m.shape), dtype=dt))
    return _restore(ckpt_dir, item, args)


def iter_params(ckpt_dir: str, paths: list[keymap.Path]) -> Iterator[tuple[keymap.Path, np.ndarray]]:
    """Yields (path, host numpy array) one leaf at a time (partial restore), bounding host memory."""
    meta = leaf_metadata(ckpt_dir)
    for path in paths:
        m = keymap.tree_get(meta, path)
        item, args = {}, {}
        keymap.tree_set(item, path, np.zeros((), m.dtype))
        keymap.tree_set(args, path, ocp.RestoreArgs(restore_type=np.ndarray, dtype=m.dtype))
        out = _restore(ckpt_dir, item, args, partial=True)
        yield path, keymap.tree_get(out, path)
        del out


def copy_hf_assets(src_dir: str, dst_dir: str, names: tuple[str, ...] = HF_ASSET_FILES) -> list[str]:
    """Copies the tokenizer / processor / template files present in `src_dir`; returns their names."""
    copied = []
    for name in names:
        src = os.path.join(src_dir, name)
        if os.path.isfile(src):
            os.makedirs(dst_dir, exist_ok=True)
            shutil.copyfile(src, os.path.join(dst_dir, name))
            copied.append(name)
    return copied
