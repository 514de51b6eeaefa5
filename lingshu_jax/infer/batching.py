"""Host-side (numpy) shaping of processor outputs for generation: left alignment, shape buckets, collation.

Processor outputs are dicts of numpy arrays (docs: lingshu_jax/processing/processor.py):
`input_ids`/`attention_mask`/`mm_token_type_ids` [B, S], and optionally `pixel_values` [N, 1176] +
`image_grid_thw` [n, 3], `pixel_values_videos` [M, 1176] + `video_grid_thw` [m, 3] + `second_per_grid_ts` [m].
Generation wants every row's last column to be a real token (left padding) and static shapes drawn from
a few buckets so that jit compiles rarely.
"""

from __future__ import annotations

import math

import numpy as np

from lingshu_jax.model import vision_inputs

ROW_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids")
VISION_KEYS = (
    "pixel_values",
    "image_grid_thw",
    "pixel_values_videos",
    "video_grid_thw",
    "second_per_grid_ts",
)


def bucket_size(n: int, step: int) -> int:
    """Rounds n >= 1 up to a bucket: multiples of `step` up to 8 * step, then 8 buckets per doubling
    (at most 12.5% waste), so sizes spread over a wide range compile only a few shapes."""
    if n <= 0:
        return step
    granule = max(step, 2 ** max(n.bit_length() - 4, 0))  # <= n / 8
    return granule * math.ceil(n / granule)


def round_up(n: int, multiple: int) -> int:
    return multiple * math.ceil(n / multiple)


def to_numpy(inputs: dict) -> dict[str, np.ndarray]:
    """Processor outputs (numpy, lists or torch tensors) -> numpy arrays; None values dropped."""
    out = {}
    for key, value in inputs.items():
        if value is None:
            continue
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        out[key] = np.asarray(value)
    if "input_ids" not in out:
        raise ValueError(f"generation inputs need 'input_ids'; got keys {sorted(out)}")
    if out["input_ids"].ndim != 2:
        raise ValueError(f"input_ids must be [batch, seq], got shape {out['input_ids'].shape}")
    out.setdefault("attention_mask", np.ones_like(out["input_ids"]))
    return out


def left_align(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Moves each row's real tokens to the right end (right or mixed padding -> left padding).

    Real tokens keep their order, so image runs (and the order images are consumed in) are unchanged.
    """
    mask = inputs["attention_mask"].astype(bool)
    if mask[:, -1].all() or not mask.any():
        return inputs
    order = np.argsort(mask, axis=1, kind="stable")  # padding first, real tokens after, both in order
    out = dict(inputs)
    for key in ROW_KEYS:
        if key in inputs:
            out[key] = np.take_along_axis(inputs[key], order, axis=1)
    return out


def pad_inputs(inputs: dict[str, np.ndarray], length: int, rows: int, pad_id: int) -> dict[str, np.ndarray]:
    """Left-pads the token arrays to `length` columns and appends all-padding rows up to `rows`."""
    b, s = inputs["input_ids"].shape
    if length < s or rows < b:
        raise ValueError(f"pad_inputs: target ({rows}, {length}) smaller than the batch ({b}, {s})")
    out = dict(inputs)
    for key in ROW_KEYS:
        if key not in inputs:
            continue
        fill = pad_id if key == "input_ids" else 0
        arr = np.full((rows, length), fill, dtype=inputs[key].dtype)
        arr[:b, length - s :] = inputs[key]
        out[key] = arr
    return out


def num_patches(inputs: dict, spatial_merge_size: int = 2, window_merge_units: int = 4) -> int:
    """Vision stream rows of the images and videos together before budget padding: their patch rows with
    every attention window padded whole (`vision_inputs.stream_rows`; Qwen2.5-VL: merge 2, 4 x 4 units)."""
    keys = ("image_grid_thw", "video_grid_thw")
    grids = [np.asarray(inputs[k]).reshape(-1, 3) for k in keys if inputs.get(k) is not None]
    kw = {"spatial_merge_size": spatial_merge_size, "window_merge_units": window_merge_units}
    return sum(vision_inputs.stream_rows(g, **kw) for g in grids)


def empty_vision(patch_dim: int) -> dict[str, np.ndarray]:
    """Processor-style vision arrays with no image: pixel_values [0, patch_dim], image_grid_thw [0, 3].
    With a patch budget they make an all-padding vision stream, so a batch without images has the same
    arrays (and shapes) as one with them: what hosts sharing one global batch need."""
    return {
        "pixel_values": np.zeros((0, patch_dim), np.float32),
        "image_grid_thw": np.zeros((0, 3), np.int64),
    }


def collate(rows: list[dict], pad_id: int) -> dict[str, np.ndarray]:
    """Single-conversation processor outputs -> one left-padded batch (vision arrays concatenated in row
    order, which is the order the processor itself consumes images across a batch)."""
    if not rows:
        raise ValueError("collate: no rows")
    rows = [to_numpy(r) for r in rows]
    ids = [
        r["input_ids"][i][r["attention_mask"][i].astype(bool)]
        for r in rows
        for i in range(len(r["input_ids"]))
    ]
    length = max(len(x) for x in ids)
    out = {
        "input_ids": np.full((len(ids), length), pad_id, np.int64),
        "attention_mask": np.zeros((len(ids), length), np.int64),
    }
    for i, x in enumerate(ids):
        out["input_ids"][i, length - len(x) :] = x
        out["attention_mask"][i, length - len(x) :] = 1
    for key in VISION_KEYS:
        parts = [r[key] for r in rows if key in r]
        if parts:
            out[key] = np.concatenate(parts)
    return out


def prompt_lengths(inputs: dict) -> np.ndarray:
    """Real tokens per row [B]."""
    return np.asarray(inputs["attention_mask"]).astype(bool).sum(axis=1)
