"""Qwen2.5-VL vision tower: patch embedding, window/full attention blocks under scan, patch merger.

Input is the host-prepared vision stream (see `vision_inputs.py`): pixel rows already in window order
(float32, or uint8 normalised here by the processor's affine, see `normalize_pixels`), (row, col) rotary
ids, window and frame segment ids. Output: merged tokens [N / 4, D_text] in window
order; `vision_token_index` maps them into the token stream.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from lingshu_jax.model import rope
from lingshu_jax.model.attention import frame_attention, window_block_attention
from lingshu_jax.model.config import ModelConfig
from lingshu_jax.model.layers import (
    RMSNorm,
    SwiGLU,
    compute_dtypes,
    dense,
    maybe_checkpoint,
)
from lingshu_jax.model.splash import splash_stream_attention
from lingshu_jax.sharding import shard


class VisionAttention(nn.Module):
    """Window attention, or full (per image / video frame) attention when `full` (static).

    The stream holds every window as a whole block of 64 rows (`vision_inputs`): window layers attend inside
    each block (a reshape); full layers attend within each frame over the key blocks a frame of
    `config.vision_attention_span` rows can reach (None: the whole stream, one dense masked attention) or
    within each of `config.vision_attention_chunks` equal chunks of the stream, whichever sees fewer keys, or
    with `attention_impl="splash"` the splash kernel over each device's chunk of the stream (frame segment
    ids). Static shapes, no gathers of keys.
    """

    config: ModelConfig
    full: bool = False

    @nn.compact
    def __call__(self, x, cos, sin, window_segments, frame_segments):
        v = self.config.vision
        _, dtype, pdtype = compute_dtypes(self.config)
        n = x.shape[0]
        qkv = dense(
            3 * v.hidden_size,
            ("vis_embed", "vis_qkv"),
            use_bias=True,
            dtype=dtype,
            param_dtype=pdtype,
            name="qkv",
        )(x).reshape(n, 3, v.num_heads, v.head_dim)
        q, k, val = qkv[:, 0], qkv[:, 1], qkv[:, 2]  # [N, heads, head_dim]
        q = rope.apply_rotary(q.astype(jnp.float32), cos, sin).astype(dtype)
        k = rope.apply_rotary(k.astype(jnp.float32), cos, sin).astype(dtype)
        window = v.window_merge_units**2 * v.merge_unit  # patches in one full window (64)
        impl = self.config.attention_impl
        if self.full and impl == "splash":  # per device chunk of the stream, frames never cross chunks
            out = splash_stream_attention(q, k, val, frame_segments)
        elif self.full:
            span, chunks = self.config.vision_attention_span, self.config.vision_attention_chunks
            out = frame_attention(
                q, k, val, frame_segments, block=window, span=span, chunks=chunks, impl=impl
            )
        else:
            out = window_block_attention(q, k, val, window_segments, block=window, impl=impl)
        out = out.reshape(n, v.hidden_size)
        return dense(
            v.hidden_size,
            ("vis_qkv", "vis_embed"),
            use_bias=True,
            dtype=dtype,
            param_dtype=pdtype,
            name="proj",
        )(out)


class VisionBlock(nn.Module):
    """One pre-norm block. Scanned: carry = hidden [N, Dv]; `full` (static) selects full vs window attention."""

    config: ModelConfig
    full: bool = False

    @nn.compact
    def __call__(self, x, cos, sin, window_segments, frame_segments):
        v = self.config.vision
        _, dtype, pdtype = compute_dtypes(self.config)
        norm = lambda name: RMSNorm(1e-6, dtype, pdtype, "vis_norm", name=name)
        attn = VisionAttention(self.config, self.full, name="attn")
        x = x + attn(norm("norm1")(x), cos, sin, window_segments, frame_segments)
        x = x + SwiGLU(
            v.hidden_size, v.intermediate_size, True, ("vis_embed", "vis_mlp"), dtype, pdtype, name="mlp"
        )(norm("norm2")(x))
        return shard(x, ("vis_tokens", "vis_embed")), None


class PatchMerger(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, x):
        v, t = self.config.vision, self.config.text
        _, dtype, pdtype = compute_dtypes(self.config)
        x = RMSNorm(1e-6, dtype, pdtype, "vis_norm", name="ln_q")(x)
        x = x.reshape(-1, v.hidden_size * v.merge_unit)  # [N / 4, 4 Dv]
        x = dense(
            x.shape[-1],
            ("vis_merge", "vis_merge_mlp"),
            use_bias=True,
            dtype=dtype,
            param_dtype=pdtype,
            name="mlp_0",
        )(x)
        x = nn.gelu(x, approximate=False)  # exact erf GELU, as torch nn.GELU()
        return dense(
            t.hidden_size,
            ("vis_merge_mlp", "embed"),
            use_bias=True,
            dtype=dtype,
            param_dtype=pdtype,
            name="mlp_2",
        )(x)


def normalize_pixels(pixel_values, pixel_scale=None, pixel_offset=None):
    """uint8 pixel rows [N, D] -> float32 x * scale + offset (pixel_scale, pixel_offset [D] float32: the
    processor's rescale + mean/std per column, `PixelNormalization.batch_arrays`); float rows unchanged."""
    if pixel_values.dtype != jnp.uint8:
        return pixel_values
    if pixel_scale is None or pixel_offset is None:
        raise ValueError(
            "uint8 pixel_values need the batch arrays pixel_scale and pixel_offset "
            "(PixelNormalization.batch_arrays) to be normalised"
        )
    return pixel_values.astype(jnp.float32) * pixel_scale + pixel_offset


class VisionTower(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(
        self, pixel_values, vision_pos, window_segments, frame_segments, pixel_scale=None, pixel_offset=None
    ):
        """pixel_values [N, 1176] (window order; float, or uint8 with pixel_scale/pixel_offset [1176])
        -> merged tokens [N / 4, D_text] (window order)."""
        v = self.config.vision
        _, dtype, pdtype = compute_dtypes(self.config)
        pixel_values = normalize_pixels(pixel_values, pixel_scale, pixel_offset)
        x = nn.Dense(
            v.hidden_size,
            use_bias=False,
            dtype=dtype,
            param_dtype=pdtype,
            name="patch_embed",
            kernel_init=nn.with_logical_partitioning(
                nn.initializers.normal(0.02), ("vis_patch", "vis_embed")
            ),
        )(pixel_values.astype(dtype))
        cos, sin = rope.vision_cos_sin(vision_pos, v.head_dim, v.rope_theta)
        n, window = x.shape[0], v.window_merge_units**2 * v.merge_unit
        # whole window blocks (and equal chunks of them); padding rows in segment -1, dropped before the merger
        pad = -n % (window * self.config.vision_attention_chunks)
        if pad:
            x, cos, sin = (jnp.pad(a, ((0, pad), (0, 0))) for a in (x, cos, sin))
            window_segments, frame_segments = (
                jnp.pad(s, (0, pad), constant_values=-1) for s in (window_segments, frame_segments)
            )
        x = shard(x, ("vis_tokens", "vis_embed"))
        consts = (cos, sin, window_segments, frame_segments)
        if self.is_initializing():  # creates the stacked parameters visual/blocks [depth, ...]
            blocks = nn.scan(
                VisionBlock,
                variable_axes={"params": 0},
                split_rngs={"params": True},
                in_axes=(nn.broadcast,) * 4,
                length=v.depth,
                metadata_params={nn.PARTITION_NAME: "layers"},
            )
            x, _ = blocks(self.config, name="blocks")(x, *consts)
        else:
            x = self._apply_blocks(nn.meta.unbox(self.variables["params"]["blocks"]), x, consts)
        x = x[:n]
        return PatchMerger(self.config, name="merger")(x)

    def _apply_blocks(self, params, x, consts):
        """Runs of consecutive same-type blocks, each one `lax.scan` over its slice of the stacked
        [depth, ...] parameters with a static attention type: no `cond` in a scan, the parameter layout
        that checkpoints and converters use stays as it is."""
        v = self.config.vision
        for start, stop, full in layer_runs(v.depth, v.fullatt_block_indexes):
            block = VisionBlock(self.config, full, parent=None)
            step = maybe_checkpoint(
                lambda h, p, block=block: block.apply({"params": p}, h, *consts),
                self.config.vision_remat_policy,
                self.config.vision_unroll_layers,
            )
            run = jax.tree_util.tree_map(lambda a, start=start, stop=stop: a[start:stop], params)
            x, _ = jax.lax.scan(step, x, run, unroll=self.config.vision_unroll_layers)
        return x


def layer_runs(depth: int, full_indexes) -> list[tuple[int, int, bool]]:
    """Consecutive blocks of one attention type: [(start, stop, full)], e.g. depth 32, full (7, 15, 23, 31)
    -> (0, 7, False), (7, 8, True), (8, 15, False), ... (31, 32, True)."""
    runs: list[tuple[int, int, bool]] = []
    for i in range(depth):
        full = i in full_indexes
        if runs and runs[-1][2] == full:
            runs[-1] = (runs[-1][0], i + 1, full)
        else:
            runs.append((i, i + 1, full))
    return runs
