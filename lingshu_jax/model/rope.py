"""Rotary position embeddings of Qwen2.5-VL.

- Vision: 2-D axial rotary (row, col) over the full head dim, theta 10000.
- Text: M-RoPE: frequency k of the half head dim takes its angle from the temporal, height or width
  position id according to `mrope_section` (e.g. 16 | 24 | 24 for head_dim 128).
- `get_rope_index`: host-side (numpy) 3-D position ids for text + images + videos, exactly as
  transformers' `Qwen2_5_VLModel.get_rope_index` (v5.24): a text run counts up on all three axes, an
  image/video run with merged grid (t, h, w) gets (cur + floor(t_i * interval), cur + i, cur + j) and the
  following text starts at cur + max(h, w).
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np


def rotate_half(x):
    x1, x2 = jnp.split(x, 2, axis=-1)
    return jnp.concatenate([-x2, x1], axis=-1)


def apply_rotary(x, cos, sin):
    """x: [..., S, heads, head_dim]; cos/sin: [..., S, head_dim] (broadcast over heads)."""
    return x * cos[..., None, :] + rotate_half(x) * sin[..., None, :]


def inverse_frequencies(dim: int, theta: float):
    """[dim // 2] inverse frequencies 1 / theta^(2i / dim), in float32 as transformers computes them."""
    return 1.0 / (theta ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))


def vision_cos_sin(vision_pos, head_dim: int, theta: float):
    """vision_pos [N, 2] (row, col) -> cos, sin [N, head_dim] float32 (angles: row freqs | col freqs, twice)."""
    inv = inverse_frequencies(head_dim // 2, theta)  # [head_dim // 4]
    freqs = vision_pos.astype(jnp.float32)[..., None] * inv  # [N, 2, head_dim // 4]
    hw = freqs.reshape(freqs.shape[0], -1)  # [N, head_dim // 2]
    emb = jnp.concatenate([hw, hw], axis=-1)
    return jnp.cos(emb), jnp.sin(emb)


def mrope_cos_sin(position_ids, head_dim: int, theta: float, mrope_section, dtype):
    """position_ids [3, B, S] -> cos, sin [B, S, head_dim] in `dtype` (computed in float32)."""
    inv = inverse_frequencies(head_dim, theta)  # [head_dim // 2]
    freqs = position_ids.astype(jnp.float32)[..., None] * inv  # [3, B, S, head_dim // 2]
    bounds = np.cumsum([0, *mrope_section])
    parts = [freqs[i % 3, ..., bounds[i] : bounds[i + 1]] for i in range(len(mrope_section))]
    f = jnp.concatenate(parts, axis=-1)  # [B, S, head_dim // 2]
    emb = jnp.concatenate([f, f], axis=-1)
    return jnp.cos(emb).astype(dtype), jnp.sin(emb).astype(dtype)


def _vision_run_positions(start: int, grid_thw, merge: int, interval: float) -> np.ndarray:
    t, h, w = int(grid_thw[0]), int(grid_thw[1]) // merge, int(grid_thw[2]) // merge
    tt = (np.arange(t) * interval).astype(np.int64)  # truncation, like torch .long()
    pos = np.stack(np.meshgrid(tt, np.arange(h), np.arange(w), indexing="ij")).reshape(3, -1)
    return pos + start


def get_rope_index(
    input_ids,
    *,
    image_token_id: int,
    video_token_id: int,
    spatial_merge_size: int,
    tokens_per_second: float,
    image_grid_thw=None,
    video_grid_thw=None,
    second_per_grid_ts=None,
    attention_mask=None,
):
    """M-RoPE position ids. input_ids [B, S] -> (position_ids [3, B, S] int32, deltas [B] int32).

    Padding positions (attention_mask == 0) get 0. Images and videos are consumed in order of appearance
    over the flattened batch, as transformers does. `deltas` = max position + 1 - number of real tokens,
    used to continue positions while decoding.
    """
    input_ids = np.asarray(input_ids)
    b, s = input_ids.shape
    mask = np.ones((b, s), bool) if attention_mask is None else np.asarray(attention_mask).astype(bool)
    grids = {
        1: iter([] if image_grid_thw is None else np.asarray(image_grid_thw).tolist()),
        2: iter([] if video_grid_thw is None else np.asarray(video_grid_thw).tolist()),
    }
    seconds = iter([1.0] * s if second_per_grid_ts is None else np.asarray(second_per_grid_ts).tolist())
    out = np.zeros((3, b, s), np.int64)
    deltas = np.zeros((b,), np.int64)
    for row in range(b):
        ids = input_ids[row][mask[row]]
        kinds = np.where(ids == image_token_id, 1, np.where(ids == video_token_id, 2, 0))
        cur, runs = 0, []
        for kind, group in itertools.groupby(kinds.tolist()):
            n = len(list(group))
            if kind == 0:
                runs.append(np.broadcast_to(np.arange(n) + cur, (3, n)))
                cur += n
                continue
            try:
                grid = next(grids[kind])
            except StopIteration:
                name = "image" if kind == 1 else "video"
                raise ValueError(
                    f"row {row}: more {name} pad tokens runs than {name} grids "
                    f"({name}_grid_thw has too few entries)"
                ) from None
            interval = tokens_per_second * next(seconds) if kind == 2 else 1.0
            pos = _vision_run_positions(cur, grid, spatial_merge_size, interval)
            if pos.shape[1] != n:
                raise ValueError(
                    f"row {row}: a run of {n} vision pad tokens does not match grid {grid} "
                    f"({pos.shape[1]} merged tokens)"
                )
            runs.append(pos)
            cur += max(int(grid[1]), int(grid[2])) // spatial_merge_size
        pos = np.concatenate(runs, axis=1) if runs else np.zeros((3, 0), np.int64)
        out[:, row, mask[row]] = pos
        deltas[row] = (pos.max() + 1 - len(ids)) if pos.size else 0
    return out.astype(np.int32), deltas.astype(np.int32)
