"""Named rematerialisation (gradient checkpointing) policies for the scanned layers.

A policy says which of a layer's forward values the backward may keep; everything else is recomputed
from the layer's input (which the scan always keeps). Names, from most memory to least:

  none           no remat: every residual is kept (fastest, most memory)
  save_dots      keep every weight matmul's output (q/k/v/o, gate/up/down): recompute norms, rope,
                 attention and activations only (`dots_with_no_batch_dims_saveable`)
  save_qkv_attn  keep the q/k/v projections and the attention output (before o_proj): recompute the MLP,
                 norms and o_proj; the attention's own backward still recomputes its softmax
  save_qkv_proj  keep the q/k/v projections only (MaxText's `save_qkv_proj`)
  offload_dots   as save_dots, but the kept matmul outputs go to pinned host memory (TPU / GPU)
  full           keep nothing: recompute the whole layer (least memory, ~1/3 more FLOPs)

The named values (`qkv_proj`, `attn_out`) are tagged with `checkpoint_name` in the text decoder's attention
(`model/text.py`); in a layer without those tags (the vision blocks) `save_qkv_*` keep nothing, as `full`.
"""

from __future__ import annotations

import jax

# value names tagged in the model with jax.ad_checkpoint.checkpoint_name
QKV_PROJ, ATTN_OUT = "qkv_proj", "attn_out"

REMAT_POLICIES = ("none", "save_dots", "save_qkv_attn", "save_qkv_proj", "offload_dots", "full")


def check_policy(name: str, what: str = "remat policy") -> str:
    if name not in REMAT_POLICIES:
        raise ValueError(f"{what} {name!r}: expected one of {', '.join(REMAT_POLICIES)}")
    return name


def checkpoint_policy(name: str):
    """The `jax.checkpoint` policy for a named policy; None for 'none' (no remat at all)."""
    cp = jax.checkpoint_policies
    check_policy(name)
    if name == "none":
        return None
    if name == "full":
        return cp.nothing_saveable
    if name == "save_dots":
        return cp.dots_with_no_batch_dims_saveable
    if name == "save_qkv_attn":
        return cp.save_only_these_names(QKV_PROJ, ATTN_OUT)
    if name == "save_qkv_proj":
        return cp.save_only_these_names(QKV_PROJ)
    return cp.offload_dot_with_no_batch_dims("device", "pinned_host")  # offload_dots
