"""The whole Qwen2.5-VL / Lingshu model: vision tower -> scatter into the token stream -> decoder -> logits.

`Qwen25VL` is the Flax module (static shapes, used under jit by training, generation and evaluation).
Its batch is the dict described in docs/DESIGN.md "Model inputs"; `prepare_inputs` builds that dict on
the host from what transformers' processor returns.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax.sharding import PartitionSpec as P

from lingshu_jax.model import rope
from lingshu_jax.model.config import ModelConfig
from lingshu_jax.model.layers import compute_dtypes, dense
from lingshu_jax.model.splash import axes_size, mesh_axes_of
from lingshu_jax.model.text import TextModel
from lingshu_jax.model.vision import VisionTower
from lingshu_jax.model.vision_inputs import build_vision_stream, stream_rows, vision_token_index
from lingshu_jax.processing.image import PIXEL_AFFINE_KEYS
from lingshu_jax.sharding import shard

VISION_KEYS = ("pixel_values", "vision_pos", "window_segments", "frame_segments")


class Qwen25VL(nn.Module):
    config: ModelConfig

    def setup(self):
        dtype, _, pdtype = compute_dtypes(self.config)
        self.visual = VisionTower(self.config)
        self.model = TextModel(self.config)
        if not self.config.tie_word_embeddings:
            self.lm_head = dense(
                self.config.text.vocab_size,
                ("embed", "vocab"),
                use_bias=False,
                dtype=dtype,
                param_dtype=pdtype,
                name="lm_head",
            )

    def embed(self, batch):
        """Token embeddings with vision tokens scattered in: [B, S, D]."""
        x = self.model.embed(batch["input_ids"])
        if "pixel_values" not in batch or batch["pixel_values"].shape[0] == 0:
            return x  # text only (static: decided at trace time)
        affine = (batch.get(k) for k in PIXEL_AFFINE_KEYS)  # normalises uint8 pixels on the device
        vis = self.visual(*(batch[k] for k in VISION_KEYS), *affine).astype(x.dtype)  # [U, D], window order
        idx = batch["vision_token_index"]  # [B, S], -1 = text
        if self.config.attention_impl == "splash":  # the stream is one chunk per device: gather locally
            return per_device_vision_scatter(vis, idx, x)
        gathered = jnp.take(vis, jnp.maximum(idx, 0), axis=0)
        return jnp.where((idx >= 0)[..., None], gathered, x)

    def logits(self, hidden):
        out = self.model.attend(hidden) if self.config.tie_word_embeddings else self.lm_head(hidden)
        return shard(out, ("batch", "seq", "act_vocab"))

    def vocab_head(self):
        """(kernel, options) for losses that apply the vocabulary head themselves (train/head_loss.py):
        the weight as stored, [D, V] (`lm_head`) or the tied embedding [V, D] (options kernel_vd=True),
        and the compute dtype and loss chunk length."""
        options = {
            "kernel_vd": self.config.tie_word_embeddings,
            "dtype": compute_dtypes(self.config)[0],
            "chunk_len": self.config.loss_chunk_len,
        }
        if self.config.tie_word_embeddings:
            return self.model.embed_tokens.embedding, options
        return self.lm_head.variables["params"]["kernel"], options

    def __call__(self, batch, cache=None, return_hidden: bool = False):
        """batch: DESIGN.md model inputs -> (logits [B, S, V] (or hidden [B, S, D]), new_cache)."""
        x = self.embed(batch)
        hidden, new_cache = self.model(x, batch["position_ids"], batch["segment_ids"], cache)
        return (hidden if return_hidden else self.logits(hidden)), new_cache


def _scatter_vision(vis, idx, x):
    gathered = jnp.take(vis, jnp.maximum(idx, 0), axis=0)
    return jnp.where((idx >= 0)[..., None], gathered, x)


def per_device_vision_scatter(vis, idx, x):
    """Vision tokens into the token stream where each device's rows take their tokens from the device's own
    chunk of the stream (`data.vision_chunks`, which attention_impl="splash" needs anyway): a local gather,
    no collective over the stream (a global `take` all-reduces the whole [U, D] merged stream).

    vis [U, D] (vis_tokens sharding), idx [B, S] (global rows of `vis`, -1 = text), x [B, S, D] -> [B, S, D].
    A row pointing outside its device's chunk (a stream not laid out per device) gives NaN, never a wrong
    token."""
    mesh = jax.sharding.get_abstract_mesh()
    axes = () if mesh.empty else mesh_axes_of("vis_tokens")
    shards = axes_size(mesh, axes)
    if shards == 1 or mesh_axes_of("batch") != axes or vis.shape[0] % shards or idx.shape[0] % shards:
        return _scatter_vision(vis, idx, x)

    def local(vis, idx, x):
        n = vis.shape[0]
        own = idx - jax.lax.axis_index(axes) * n
        outside = jnp.any((idx >= 0) & ((own < 0) | (own >= n)))
        out = _scatter_vision(vis, jnp.where(idx >= 0, own, -1), x)
        return jnp.where(outside, jnp.nan, out).astype(x.dtype)

    rows = P(axes)
    return jax.shard_map(local, mesh=mesh, in_specs=(rows, rows, rows), out_specs=rows, check_vma=False)(
        vis, idx, x
    )


def prepare_inputs(
    config: ModelConfig,
    input_ids,
    attention_mask=None,
    pixel_values=None,
    image_grid_thw=None,
    pixel_values_videos=None,
    video_grid_thw=None,
    second_per_grid_ts=None,
    patch_budget: int | None = None,
    pixel_normalization=None,
    vision_chunks: int | None = None,
) -> dict[str, np.ndarray]:
    """Host-side: transformers-processor outputs -> the model's static-shape batch dict (numpy).

    Pixel rows are only permuted and padded, so uint8 rows (`ImageProcessor(output="uint8")`) stay uint8;
    they need `pixel_normalization` (the processor's `PixelNormalization`), whose pixel_scale/pixel_offset
    arrays join the batch and normalise them on the device. Other pixel rows become float32.

    vision_chunks > 1: the rows split into that many equal groups and the stream into as many equal chunks
    of patch_budget / vision_chunks rows, group g's images and videos in chunk g only: with one chunk per
    device (attention_impl="splash" attends per device chunk) no image crosses a device. None: the model's
    `vision_attention_chunks` (its full-attention layers attend per chunk). Without a patch_budget, chunks
    are as large as the fullest group's images need.
    """
    input_ids = np.asarray(input_ids).astype(np.int32)
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must be [batch, seq], got shape {input_ids.shape}")
    mask = np.ones_like(input_ids) if attention_mask is None else np.asarray(attention_mask).astype(np.int32)
    media = (pixel_values, image_grid_thw, pixel_values_videos, video_grid_thw, second_per_grid_ts)
    chunks = config.vision_attention_chunks if vision_chunks is None else vision_chunks
    if chunks > 1 and (pixel_values is not None or pixel_values_videos is not None):
        return _prepare_chunked(config, input_ids, mask, media, patch_budget, pixel_normalization, chunks)
    v = config.vision
    position_ids, _ = rope.get_rope_index(
        input_ids,
        image_token_id=config.image_token_id,
        video_token_id=config.video_token_id,
        spatial_merge_size=v.spatial_merge_size,
        tokens_per_second=v.tokens_per_second,
        image_grid_thw=image_grid_thw,
        video_grid_thw=video_grid_thw,
        second_per_grid_ts=second_per_grid_ts,
        attention_mask=mask,
    )
    batch = {"input_ids": input_ids, "segment_ids": mask, "position_ids": position_ids}
    pix, grids = [], []
    for p, g, name in (
        (pixel_values, image_grid_thw, "image"),
        (pixel_values_videos, video_grid_thw, "video"),
    ):
        if (p is None) != (g is None):
            raise ValueError(f"{name}: pixel values and grid_thw must be given together")
        if p is not None:
            pix.append(np.asarray(p))
            grids.append(np.asarray(g, np.int64).reshape(-1, 3))
    if not pix:
        n_vis = int(np.isin(input_ids, [config.image_token_id, config.video_token_id]).sum())
        if n_vis:
            raise ValueError(f"input_ids hold {n_vis} image/video pad tokens but no pixel values were given")
        return batch
    check_attention_span(config, np.concatenate(grids))
    pixels = _stream_pixels(pix, pixel_normalization)
    stream = build_vision_stream(
        pixels,
        np.concatenate(grids),
        spatial_merge_size=v.spatial_merge_size,
        window_merge_units=v.window_merge_units,
        patch_budget=patch_budget,
    )
    n_image_units = (
        0 if image_grid_thw is None else int(np.prod(np.asarray(image_grid_thw), 1).sum()) // v.merge_unit
    )
    batch.update(stream.as_dict())
    if pixels.dtype == np.uint8:
        batch.update(pixel_normalization.batch_arrays(pixels.shape[1]))
    batch["vision_token_index"] = vision_token_index(
        input_ids,
        stream.unit_position,
        image_token_id=config.image_token_id,
        video_token_id=config.video_token_id,
        num_image_units=n_image_units,
    )
    return batch


def media_per_row(input_ids, attention_mask, grid_thw, token_id: int, merge_unit: int) -> np.ndarray:
    """[B + 1] offsets: the images (videos) of row r are grid_thw[off[r]:off[r + 1]] (processor order:
    row by row, each image's `prod(grid) / merge_unit` pad tokens in a run). ValueError on a mismatch."""
    grid = np.asarray(grid_thw, np.int64).reshape(-1, 3)
    tokens = (grid.prod(axis=1) // merge_unit).tolist()
    per_row = ((np.asarray(input_ids) == token_id) & (np.asarray(attention_mask) > 0)).sum(axis=1)
    off, i = [0], 0
    for r, n in enumerate(per_row.tolist()):
        while n > 0 and i < len(tokens):
            n -= tokens[i]
            i += 1
        if n:
            raise ValueError(
                f"row {r}: its pad tokens (id {token_id}) do not match whole images/videos of grid_thw"
            )
        off.append(i)
    if i != len(tokens):
        raise ValueError(f"{len(tokens) - i} images/videos of grid_thw have no pad tokens in input_ids")
    return np.asarray(off)


def _media_slice(pixels, grid, extra, off: np.ndarray, r0: int, r1: int):
    """(pixels, grid, extra) of the media of rows [r0, r1) (0-row arrays when they have none)."""
    grid = np.asarray(grid, np.int64).reshape(-1, 3)
    starts = np.concatenate([[0], np.cumsum(grid.prod(axis=1))])
    i0, i1 = off[r0], off[r1]
    pix = np.asarray(pixels)[starts[i0] : starts[i1]]
    return pix, grid[i0:i1], (None if extra is None else np.asarray(extra)[i0:i1])


def _prepare_chunked(config, input_ids, mask, media, patch_budget, pixel_normalization, chunks) -> dict:
    """`prepare_inputs` of each group of rows with its own stream chunk, concatenated."""
    b = input_ids.shape[0]
    pix, img_grid, vid_pix, vid_grid, seconds = media
    if patch_budget is None and b % chunks == 0:  # chunks as large as the fullest group needs
        grids = {"input_ids": input_ids, "attention_mask": mask}
        grids.update(image_grid_thw=img_grid, video_grid_thw=vid_grid)
        patch_budget = chunks * max(chunk_stream_rows(config, grids, b // chunks))
    if b % chunks or not patch_budget or patch_budget % chunks:
        raise ValueError(
            f"vision_chunks={chunks} must divide the batch's {b} rows and its patch_budget={patch_budget}"
            + (" (model.vision_attention_chunks)" if chunks == config.vision_attention_chunks else "")
        )
    unit, rows = config.vision.merge_unit, b // chunks
    img = None if pix is None else media_per_row(input_ids, mask, img_grid, config.image_token_id, unit)
    vid = None if vid_pix is None else media_per_row(input_ids, mask, vid_grid, config.video_token_id, unit)
    parts = []
    for c in range(chunks):
        r0, r1 = c * rows, (c + 1) * rows
        i_pix, i_grid, _ = (
            (None, None, None) if img is None else _media_slice(pix, img_grid, None, img, r0, r1)
        )
        v_pix, v_grid, v_sec = (
            (None, None, None) if vid is None else _media_slice(vid_pix, vid_grid, seconds, vid, r0, r1)
        )
        part = prepare_inputs(
            config,
            input_ids[r0:r1],
            mask[r0:r1],
            i_pix,
            i_grid,
            v_pix,
            v_grid,
            v_sec,
            patch_budget=patch_budget // chunks,
            pixel_normalization=pixel_normalization,
            vision_chunks=1,
        )
        parts.append(part)
    return concat_vision_chunks(parts, patch_budget // chunks, unit)


def concat_vision_chunks(parts: list[dict], chunk_budget: int, merge_unit: int) -> dict:
    """Batch dicts whose streams are `chunk_budget` rows each -> one batch: rows and streams concatenated
    (position_ids [3, B, S] on axis 1), window/frame segment ids and `vision_token_index` offset so that
    they stay unique and point into their own chunk; the per-column pixel normalisation taken once."""
    if len(parts) == 1:
        return parts[0]
    parts = [dict(p) for p in parts]
    for c in range(1, len(parts)):
        prev, part = parts[c - 1], parts[c]
        for key in ("window_segments", "frame_segments"):
            part[key] = part[key] + prev[key].max() + 1
        index = part["vision_token_index"]
        part["vision_token_index"] = np.where(index >= 0, index + c * chunk_budget // merge_unit, -1)
    out = {
        k: np.concatenate([p[k] for p in parts], axis=1 if k == "position_ids" else 0)
        for k in parts[0]
        if k not in PIXEL_AFFINE_KEYS
    }
    out.update({k: parts[0][k] for k in PIXEL_AFFINE_KEYS if k in parts[0]})
    return out


def chunk_stream_rows(config: ModelConfig, inputs: dict, rows_per_chunk: int) -> list[int]:
    """Vision stream rows (windows padded whole) that each group of `rows_per_chunk` rows of processor
    outputs `inputs` takes: what one stream chunk must hold."""
    v = config.vision
    ids, mask = np.asarray(inputs["input_ids"]), np.asarray(inputs["attention_mask"])
    totals = np.zeros(-(-ids.shape[0] // rows_per_chunk), np.int64)
    for key, token in (("image_grid_thw", config.image_token_id), ("video_grid_thw", config.video_token_id)):
        if inputs.get(key) is None:
            continue
        grid = np.asarray(inputs[key], np.int64).reshape(-1, 3)
        off = media_per_row(ids, mask, grid, token, v.merge_unit)
        for c in range(len(totals)):
            r0, r1 = c * rows_per_chunk, min((c + 1) * rows_per_chunk, ids.shape[0])
            totals[c] += stream_rows(
                grid[off[r0] : off[r1]],
                spatial_merge_size=v.spatial_merge_size,
                window_merge_units=v.window_merge_units,
            )
    return totals.tolist()


def check_attention_span(config: ModelConfig, grid_thw: np.ndarray) -> None:
    """ValueError when an image (video frame) takes more stream rows than the full-attention vision layers
    reach (`config.vision_attention_span`, xla attention): they would give NaN for it, not its attention."""
    span, v = config.vision_attention_span, config.vision
    if not span or config.attention_impl == "splash" or not len(grid_thw):
        return
    frames = np.asarray(grid_thw, np.int64).reshape(-1, 3).copy()
    frames[:, 0] = 1
    rows = [stream_rows(g, spatial_merge_size=v.spatial_merge_size, window_merge_units=v.window_merge_units)
            for g in frames]  # fmt: skip
    worst = int(np.argmax(rows))
    if rows[worst] > span:
        t, h, w = (int(x) for x in grid_thw.reshape(-1, 3)[worst])
        raise ValueError(
            f"image/video {worst} of the batch (grid {t}x{h}x{w} patches) takes {rows[worst]} vision-stream rows, "
            f"more than model.vision_attention_span={span}: its full-attention layers would not see all of it. "
            f"Raise the span (>= {rows[worst]}) or lower the processor's max_pixels."
        )


def _stream_pixels(parts: list[np.ndarray], pixel_normalization) -> np.ndarray:
    """Images' then videos' pixel rows, concatenated: uint8 when all are uint8, else float32."""
    uint8 = [p.dtype == np.uint8 for p in parts]
    if not any(uint8):
        return np.concatenate([p.astype(np.float32, copy=False) for p in parts])
    if not all(uint8):
        raise ValueError("image and video pixel rows must be all uint8 or all float, not a mix")
    if pixel_normalization is None:
        raise ValueError("uint8 pixel rows need pixel_normalization (the image processor's `.normalization`)")
    return np.concatenate(parts)


def dummy_batch(config: ModelConfig, batch: int = 1, seq: int = 8) -> dict[str, np.ndarray]:
    """A smallest batch with one image, so `init` / `eval_shape` create every parameter."""
    m = config.vision.spatial_merge_size
    units = 1
    ids = np.zeros((batch, seq), np.int32)
    ids[0, :units] = config.image_token_id
    pix = np.zeros((m * m * units, config.vision.patch_dim), np.float32)
    return prepare_inputs(
        config, ids, pixel_values=pix, image_grid_thw=np.array([[1, m, m]]), vision_chunks=1
    )


def init_params(config: ModelConfig, rng, boxed: bool = False):
    """Random parameters (the `params` collection). `boxed=True` keeps the logical-axis metadata."""
    variables = Qwen25VL(config).init(rng, dummy_batch(config))
    params = variables["params"]
    return params if boxed else nn.meta.unbox(params)


def abstract_params(config: ModelConfig, boxed: bool = False):
    """Parameter shapes/dtypes without allocating memory (jax.eval_shape)."""
    import jax

    return jax.eval_shape(lambda: init_params(config, jax.random.key(0), boxed=boxed))
