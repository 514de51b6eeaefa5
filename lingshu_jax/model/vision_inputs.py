"""Host-side (numpy) preparation of the vision stream, so the jitted model sees static shapes only.

From the `grid_thw` of every image/video in a batch (in the order transformers consumes them: all
images, then all videos) we compute, once per batch on the host:
- the window permutation of merge units (transformers' `get_vision_window_index`), applied to the pixel
  rows here, so the device never permutes; every window is padded to whole ws * ws merge units
  (64 patches for Qwen2.5-VL), so on the device windows are a reshape [windows, 64] (`stream_rows`);
  padding rows are zeros, each its own window and frame segment, and no token points at them;
- (row, col) rotary ids, window segment ids and frame segment ids, in window order;
- for every token of `input_ids`, the index of its merged vision embedding in window order
  (`vision_token_index`, -1 for text), which replaces transformers' masked_scatter + argsort.
Everything can be padded to a fixed patch budget so a training run compiles once.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np


@dataclasses.dataclass
class VisionStream:
    pixel_values: np.ndarray  # [N, patch_dim] float, window order, windows padded whole
    vision_pos: np.ndarray  # [N, 2] int32 (row, col)
    window_segments: np.ndarray  # [N] int32
    frame_segments: np.ndarray  # [N] int32
    unit_position: np.ndarray  # [U] int32: original merged token u -> its merged row in the stream
    num_real_patches: int

    def as_dict(self):
        return {
            "pixel_values": self.pixel_values,
            "vision_pos": self.vision_pos,
            "window_segments": self.window_segments,
            "frame_segments": self.frame_segments,
        }


@functools.lru_cache(maxsize=256)  # a data set's images share a few sizes; read-only results
def _window_slots(t: int, h: int, w: int, ws: int) -> np.ndarray:
    """Merge units of one image/video (merged grid t, h, w) laid out in whole windows of ws * ws slots:
    [t * ceil(h / ws) * ceil(w / ws) * ws * ws] original unit index per slot, -1 for padding. Windows come in
    transformers' order (`get_vision_window_index`, its empty windows dropped), each window's real units
    first in transformers' order, then its padding slots."""
    index = np.arange(t * h * w).reshape(t, h, w)
    nh, nw = -(-h // ws), -(-w // ws)
    padded = np.full((t, nh * ws, nw * ws), -1, np.int64)
    padded[:, :h, :w] = index
    windows = padded.reshape(t, nh, ws, nw, ws).transpose(0, 1, 3, 2, 4).reshape(-1, ws * ws)
    real_first = np.argsort(windows < 0, axis=1, kind="stable")
    return _read_only(np.take_along_axis(windows, real_first, 1).reshape(-1))


def _read_only(x: np.ndarray) -> np.ndarray:
    x.flags.writeable = False
    return x


def stream_rows(grid_thw, *, spatial_merge_size: int, window_merge_units: int) -> int:
    """Patch rows that images/videos of `grid_thw` [n, 3] take in the vision stream, windows padded whole."""
    grid = np.asarray(grid_thw, dtype=np.int64).reshape(-1, 3)
    if not len(grid):
        return 0
    m, ws = spatial_merge_size, window_merge_units
    nh, nw = -(-(grid[:, 1] // m) // ws), -(-(grid[:, 2] // m) // ws)
    return int((grid[:, 0] * nh * nw).sum()) * ws * ws * m * m


def max_frame_rows(
    max_pixels: int, *, patch_size: int = 14, spatial_merge_size: int = 2, window_merge_units: int = 4
) -> int:
    """Stream rows of the largest image (video frame) that the processor's `max_pixels` allows, windows
    padded whole: the `vision_attention_span` under which full-attention layers are exact for every image.
    (Square-ish images of max_pixels take max_pixels / patch_size**2 rows; thin ones pad more.)"""
    side, ws = patch_size * spatial_merge_size, window_merge_units
    units = max_pixels // side**2  # merge units of the largest image
    best = 0
    for h in range(1, units + 1):
        w = units // h
        if max(h, w) > 200 * min(h, w):  # smart_resize's aspect-ratio limit
            continue
        best = max(best, -(-h // ws) * -(-w // ws))
    return best * ws * ws * spatial_merge_size**2


def _own_segments(segments: np.ndarray) -> np.ndarray:
    """-1 entries (padding rows) -> a new segment id each, after the largest real id."""
    pad = segments < 0
    segments = segments.copy()
    segments[pad] = (int(segments.max()) + 1 if (~pad).any() else 0) + np.arange(int(pad.sum()))
    return segments


@functools.lru_cache(maxsize=256)
def _rotary_ids(t: int, h: int, w: int, merge: int) -> np.ndarray:
    """(row, col) ids in transformers' patch order (merge blocks row-major), repeated over t: [t*h*w, 2]."""
    hh, ww = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    shape = (h // merge, merge, w // merge, merge)
    hh = hh.reshape(shape).transpose(0, 2, 1, 3).reshape(-1)
    ww = ww.reshape(shape).transpose(0, 2, 1, 3).reshape(-1)
    return _read_only(np.tile(np.stack([hh, ww], -1), (t, 1)))


def build_vision_stream(
    pixel_values,
    grid_thw,
    *,
    spatial_merge_size: int,
    window_merge_units: int,
    patch_budget: int | None = None,
) -> VisionStream:
    """pixel_values [N, patch_dim] in transformers' row order; grid_thw [n, 3] (t, h, w in patches)."""
    pixel_values = np.asarray(pixel_values)
    grid_thw = np.asarray(grid_thw, dtype=np.int64).reshape(-1, 3)
    m, unit = spatial_merge_size, spatial_merge_size**2
    expected = int(np.prod(grid_thw, axis=1).sum()) if len(grid_thw) else 0
    if pixel_values.shape[0] != expected:
        raise ValueError(
            f"pixel_values has {pixel_values.shape[0]} patch rows but image/video grid_thw "
            f"{grid_thw.tolist()} implies {expected}"
        )
    if len(grid_thw) and ((grid_thw[:, 1:] % m) != 0).any():
        raise ValueError(f"grid_thw {grid_thw.tolist()}: h and w must be multiples of spatial_merge_size {m}")
    slots, pos, wseg, fseg = [], [], [], []
    unit_offset = n_windows = n_frames = 0
    window = window_merge_units**2
    for t, h, w in grid_thw.tolist():
        units = _window_slots(t, h // m, w // m, window_merge_units)  # [slots] unit or -1
        real = units >= 0
        slots.append(np.where(real, units + unit_offset, -1))
        rot = np.zeros((len(units), unit, 2), np.int64)
        rot[real] = _rotary_ids(t, h, w, m).reshape(-1, unit, 2)[units[real]]
        pos.append(rot.reshape(-1, 2))
        windows = len(units) // window
        per_frame = windows // t
        wseg.append(np.where(real, np.repeat(np.arange(windows) + n_windows, window), -1))
        fseg.append(np.where(real, np.repeat(np.arange(windows) // per_frame + n_frames, window), -1))
        unit_offset += t * (h // m) * (w // m)
        n_windows += windows
        n_frames += t
    slot = np.concatenate(slots) if slots else np.zeros((0,), np.int64)  # [S] window slot -> unit or -1
    real = slot >= 0
    rows = (slot[real][:, None] * unit + np.arange(unit)).reshape(-1)  # source rows of the real slots
    d = pixel_values.shape[1]
    pixels = np.zeros((len(slot) * unit, d), pixel_values.dtype)
    pixels.reshape(len(slot), unit * d)[real] = pixel_values[rows].reshape(len(rows) // unit, unit * d)
    unit_position = np.zeros(int(real.sum()), np.int32)
    unit_position[slot[real]] = np.flatnonzero(real)
    per_row = lambda parts: np.repeat(np.concatenate(parts) if parts else np.zeros(0, np.int64), unit)
    stream = VisionStream(
        pixel_values=pixels,
        vision_pos=np.concatenate(pos).astype(np.int32) if pos else np.zeros((0, 2), np.int32),
        window_segments=_own_segments(per_row(wseg)).astype(np.int32),
        frame_segments=_own_segments(per_row(fseg)).astype(np.int32),
        unit_position=unit_position,
        num_real_patches=expected,
    )
    return pad_vision_stream(stream, patch_budget) if patch_budget is not None else stream


def pad_vision_stream(stream: VisionStream, patch_budget: int) -> VisionStream:
    """Pads the stream to `patch_budget` rows. Each padding row is a segment of its own (window and frame),
    so no segment grows with the padding and block-local attention stays exact."""
    n = stream.pixel_values.shape[0]
    if patch_budget < n:
        raise ValueError(f"vision patch budget {patch_budget} is smaller than the batch's {n} patches")
    pad = patch_budget - n
    if pad == 0:
        return stream
    pad_ids = lambda seg: (int(seg.max()) + 1 if seg.size else 0) + np.arange(pad, dtype=np.int32)
    return dataclasses.replace(
        stream,
        pixel_values=np.concatenate(
            [stream.pixel_values, np.zeros((pad, stream.pixel_values.shape[1]), stream.pixel_values.dtype)]
        ),
        vision_pos=np.concatenate([stream.vision_pos, np.zeros((pad, 2), np.int32)]),
        window_segments=np.concatenate([stream.window_segments, pad_ids(stream.window_segments)]),
        frame_segments=np.concatenate([stream.frame_segments, pad_ids(stream.frame_segments)]),
    )


def vision_token_index(
    input_ids, unit_position, *, image_token_id: int, video_token_id: int, num_image_units: int
) -> np.ndarray:
    """[B, S] int32: for each image (video) pad token, the window-order row of its merged embedding; -1 else.

    Image pad tokens take image units 0.. in flattened batch order; video pad tokens take the units after
    all images (the stream holds images first), as transformers' two masked_scatter calls do.
    """
    input_ids = np.asarray(input_ids)
    out = np.full(input_ids.shape, -1, np.int32)
    is_img, is_vid = input_ids == image_token_id, input_ids == video_token_id
    n_img, n_vid = int(is_img.sum()), int(is_vid.sum())
    n_vid_units = len(unit_position) - num_image_units
    if n_img != num_image_units:
        raise ValueError(
            f"input_ids hold {n_img} image pad tokens but the images give {num_image_units} "
            "merged tokens (more image tokens than images, or a grid that disagrees)"
        )
    if n_vid != n_vid_units:
        raise ValueError(
            f"input_ids hold {n_vid} video pad tokens but the videos give {n_vid_units} merged tokens"
        )
    out[is_img] = unit_position[:n_img]
    out[is_vid] = unit_position[num_image_units : num_image_units + n_vid]
    return out
