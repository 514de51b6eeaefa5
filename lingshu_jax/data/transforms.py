"""Per-sample transform (runs in grain workers): raw record -> training sample, or a skip record.

Sample (all numpy; L <= seq_len, P patch rows, n images)::

  input_ids      [L] int32
  labels         [L] int32      -100 except supervised tokens (HF convention: unshifted; labels[0] = -100)
  position_ids   [3, L] int32   M-RoPE ids of the sample on its own (start at 0)
  pixel_values   [P, 1176] u8   transformers' row order (window permutation happens per batch); the
                                resized image's values (normalised by the model), or normalised
                                float32 rows under pixel_dtype="float32"; images' and videos' rows
                                in their order of appearance in the conversation
  image_grid_thw [n, 3] int32   grid (t, h, w) of each image and video in that order (t > 1: a video)
  stats          {counter: int}  e.g. {"samples": 1, "samples/<source>": 1, "truncated": 1}

Videos: a frame folder (image files in natural order), a list of frame files, or frames given inline; the
frames count as sampled at `video_fps` per second and at most `video_max_frames` are kept (evenly spaced,
the rate scaled to match), so `second_per_grid_ts` = temporal_patch_size / rate sets their M-RoPE time
positions as transformers does. A video file (mp4, webm, avi, mov, mkv...) is decoded with PyAV and sampled
from its own frame rate at `video_fps`, at most `video_max_frames` frames, as transformers' Qwen2-VL video
processor samples it (processing/video.py); so is a video file held as bytes (a Parquet / Arrow column:
raw bytes or Hugging Face `datasets`' {bytes, path} struct), decoded from memory; an unreadable file is a
corrupt_image error naming it (bytes: by record, e.g. file[row r]).

`labels[0] = -100` keeps a packed row exact: the last token of one segment never learns to predict the
first token of the next. Unpacked, position 0 is never a target anyway, so nothing changes.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from lingshu_jax.data import errors, formats
from lingshu_jax.data.errors import DataError
from lingshu_jax.data.ops import Ops
from lingshu_jax.model import vision_inputs

IGNORE = -100


@dataclasses.dataclass(frozen=True)
class SampleTransform:
    """Callable raw record -> sample or skip record. `roots[i]`/`names[i]`: image root / name of source i."""

    ops: Ops
    policy: errors.ErrorPolicy
    seq_len: int
    patch_budget: int
    roots: Sequence[str]
    names: Sequence[str]
    train_on: str = "assistant"
    truncation: str = "drop"
    video_fps: float = 2.0
    video_max_frames: int = 64

    def __call__(self, raw: dict) -> dict:
        where = raw.get("where", "?")
        try:
            return self._convert(raw, where)
        except DataError as e:
            return {**self.policy.handle(e), "source": self.names[raw.get("source", 0)]}

    def _convert(self, raw: dict, where: str) -> dict:
        source = raw.get("source", 0)
        if "exception" in raw:  # the source could not read the record (kind given, or an image failure)
            exc = Exception(raw["exception"])
            kind = raw.get("kind") or errors.classify_image_error(exc)
            raise DataError(kind, f"the source failed to decode it: {exc}", where)
        record = formats.decode_record(raw["data"], where)
        messages, _ = formats.to_messages(record, where)
        vision = self._vision(formats.media(messages), self.roots[source], where)
        encoded = self._encode(messages, vision, where)
        ids = np.asarray(encoded["input_ids"], np.int32).reshape(-1)
        mask = np.asarray(encoded["assistant_mask"], bool).reshape(-1)
        labels = make_labels(ids, mask, self.train_on, self.ops.image_token_id, self.ops.video_token_id)
        stats = {"samples": 1, f"samples/{self.names[source]}": 1}
        if len(ids) > self.seq_len:
            if self.truncation == "drop" or vision["video_grid_thw"] is not None:
                why = (
                    "truncation='drop'" if self.truncation == "drop" else "a sample with a video is never cut"
                )
                raise DataError(errors.TOO_LONG, f"{len(ids)} tokens > seq_len {self.seq_len} ({why})", where)
            ids, labels, vision = truncate(ids, labels, vision, self.seq_len, self.ops)
            stats["truncated"] = 1
        if not (labels != IGNORE).any():
            raise DataError(
                errors.NO_LABELS,
                f"no supervised tokens (train_on={self.train_on!r}"
                + (", after truncation)" if "truncated" in stats else ")"),
                where,
            )
        grid = vision["image_grid_thw"]
        rows = vision_inputs.stream_rows(
            grid, spatial_merge_size=self.ops.merge_size, window_merge_units=self.ops.window_merge_units
        )
        if rows > self.patch_budget:
            raise DataError(
                errors.TOO_MANY_PATCHES,
                f"{len(vision['pixel_values'])} vision patches ({rows} stream rows, windows padded whole) "
                f"> patch_budget {self.patch_budget}",
                where,
            )
        if vision["video_grid_thw"] is None:
            positions = self.ops.rope_index(ids[None], grid if len(grid) else None)
        else:
            images = vision["kinds"] == "image"
            positions = self.ops.rope_index(
                ids[None], grid[images] if images.any() else None, vision["video_grid_thw"], vision["seconds"]
            )
        return {
            "input_ids": ids,
            "labels": labels,
            "position_ids": np.asarray(positions, np.int32).reshape(3, -1),
            "pixel_values": vision["pixel_values"],
            "image_grid_thw": grid,
            "stats": stats,
        }

    def _vision(self, media: list, root: str, where: str) -> dict:
        """Loads + processes the images and videos -> {"pixel_values" [P, 1176] u8|f32, "image_grid_thw"
        [n, 3] i32} in order of appearance, plus (with videos) the images' inputs, the videos' inputs,
        their grids and seconds per temporal patch, and each item's kind."""
        if not media:
            return empty_vision()
        refs = [ref for kind, ref in media if kind == "image"]
        images = [load_one(self.ops, ref, root, where) for ref in refs]
        out = {"image": _processed(self.ops.process_images, images, where) if images else None}
        videos = [self._frames(ref, root, where) for kind, ref in media if kind == "video"]
        if videos:
            if self.ops.process_videos is None:
                raise DataError(errors.BAD_RECORD, "a video in a pipeline without a video processor", where)
            frames, rates = zip(*videos)
            out["video"] = _processed(
                lambda v: self.ops.process_videos(v, fps=list(rates)), list(frames), where
            )
        kinds = np.asarray([kind for kind, _ in media])
        if not videos:
            return {**out["image"], "video_grid_thw": None, "kinds": kinds}
        return _interleave(out["image"], out["video"], kinds)

    def _frames(self, ref, root: str, where: str) -> tuple[list, float]:
        """A video reference -> (frames (at most video_max_frames, evenly spaced), their rate per second)."""
        if isinstance(ref, dict):  # Hugging Face `datasets` Video() / Image()-like struct {bytes, path}
            ref = ref.get("bytes") or ref.get("path")
        if isinstance(ref, (bytes, bytearray)):  # a video file embedded in a Parquet / Arrow column
            return self._decoded(bytes(ref), f"<{len(ref)} bytes>", where)
        if isinstance(ref, (str, os.PathLike)):
            path = errors.resolve_under_root(os.fspath(ref), root, where)
            if not os.path.exists(path):
                raise DataError(errors.MISSING_IMAGE, f"video {ref!r} not found (under {root})", where)
            if not os.path.isdir(path):
                return self._decoded(path, ref, where)
            names = sorted((n for n in os.listdir(path) if n.lower().endswith(FRAME_SUFFIXES)), key=_natural)
            if not names:
                raise DataError(errors.MISSING_IMAGE, f"video folder {ref!r} holds no frame images", where)
            ref = [os.path.join(os.fspath(ref), n) for n in names]
        if not isinstance(ref, (list, tuple)) or not ref:
            raise DataError(
                errors.BAD_RECORD, f"a video must be a frame folder or a list of frames: {ref!r}", where
            )
        keep = np.arange(len(ref))
        if len(ref) > self.video_max_frames:
            keep = np.round(np.linspace(0, len(ref) - 1, self.video_max_frames)).astype(int)
        frames = [load_one(self.ops, ref[i], root, where) for i in keep]
        return frames, self.video_fps * len(keep) / len(ref)

    def _decoded(self, path: str | bytes, ref, where: str) -> tuple[list, float]:
        """A video file (its path or its bytes) -> (its frames sampled at video_fps, at most
        video_max_frames; their rate); `ref` names it in errors."""
        if self.ops.load_video is None:
            raise DataError(
                errors.BAD_RECORD, f"video file {ref!r}: this pipeline has no video reader", where
            )
        try:
            return self.ops.load_video(path, self.video_fps, self.video_max_frames)
        except Exception as e:  # noqa: BLE001 -- FFmpeg / container errors are data errors of this record
            raise DataError(
                errors.CORRUPT_IMAGE, f"video file {ref!r}: {type(e).__name__}: {e}", where
            ) from None

    def _encode(self, messages: list, vision: dict, where: str) -> dict:
        try:
            if vision["video_grid_thw"] is None:
                return self.ops.encode(messages, vision if len(vision["image_grid_thw"]) else None)
            return self.ops.encode(messages, vision["image_inputs"], vision["video_inputs"])
        except ValueError as e:  # template errors, placeholder/image count mismatches
            raise DataError(errors.BAD_RECORD, f"cannot render the conversation: {e}", where) from None


FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def _natural(name: str) -> list:
    """Sort key: frame_2 before frame_10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def empty_vision() -> dict:
    return {
        "pixel_values": np.zeros((0, 1176), np.float32),
        "image_grid_thw": np.zeros((0, 3), np.int32),
        "video_grid_thw": None,
        "kinds": np.zeros(0, str),
    }


def _processed(process, items: list, where: str) -> dict:
    """process(items) -> its output with pixel rows as uint8 / float32 and int32 grids [n, 3]."""
    try:
        out = process(items)
    except Exception as e:  # noqa: BLE001 -- degenerate image / frames (aspect ratio, no pixels, sizes...)
        raise DataError(errors.CORRUPT_IMAGE, f"image / video processing failed: {e}", where) from None
    key = "pixel_values" if "pixel_values" in out else "pixel_values_videos"
    pixels = np.asarray(out[key])  # uint8, or float32 under pixel_dtype="float32"
    grid = out["image_grid_thw"] if key == "pixel_values" else out["video_grid_thw"]
    result = {
        "pixel_values": pixels if pixels.dtype == np.uint8 else pixels.astype(np.float32, copy=False),
        "image_grid_thw": np.asarray(grid, np.int32).reshape(-1, 3),
    }
    if "second_per_grid_ts" in out:
        result["seconds"] = np.asarray(out["second_per_grid_ts"], np.float64)
    return result


def _interleave(images: dict | None, videos: dict, kinds: np.ndarray) -> dict:
    """Images' and videos' rows and grids merged in order of appearance (`kinds`), with each side's own
    inputs kept for the tokenizer and the rope index."""
    chunks = {}
    for kind, part in (("image", images), ("video", videos)):
        if part is not None:
            ends = np.cumsum(part["image_grid_thw"].prod(axis=1))
            chunks[kind] = list(zip(np.split(part["pixel_values"], ends[:-1]), part["image_grid_thw"]))
    order = [chunks[k].pop(0) for k in kinds]
    rows = [part_rows for part_rows, _ in order]
    return {
        "pixel_values": rows[0] if len(rows) == 1 else np.concatenate(rows),  # one video: no copy
        "image_grid_thw": np.stack([grid for _, grid in order]).astype(np.int32),
        "image_inputs": images,
        "video_inputs": {
            "pixel_values_videos": videos["pixel_values"],
            "video_grid_thw": videos["image_grid_thw"],
            "second_per_grid_ts": videos["seconds"],
        },
        "video_grid_thw": videos["image_grid_thw"],
        "seconds": videos["seconds"],
        "kinds": kinds,
    }


def load_one(ops: Ops, ref: Any, root: str, where: str):
    """One image reference (path under root, encoded bytes, array, PIL, {"bytes"|"path"}) -> image."""
    if isinstance(ref, dict):
        ref = ref.get("bytes") or ref.get("path")
    if isinstance(ref, (str, os.PathLike)):
        path = errors.resolve_under_root(os.fspath(ref), root, where)
        if not os.path.isfile(path):
            raise DataError(errors.MISSING_IMAGE, f"image file {ref!r} not found (under {root})", where)
        src = path
    elif isinstance(ref, (bytes, bytearray)):
        src = ref
    elif ref is None:
        raise DataError(errors.BAD_RECORD, "image part without data", where)
    else:
        return ref  # decoded already (numpy array from TFDS, PIL image)
    try:
        return ops.load_image(src)
    except Exception as e:  # noqa: BLE001 -- loader errors are classified into data error classes
        raise DataError(errors.classify_image_error(e), f"image {str(ref)[:200]!r}: {e}", where) from None


def make_labels(
    ids: np.ndarray, assistant_mask: np.ndarray, train_on: str, image_token_id: int, video_token_id: int
) -> np.ndarray:
    """[L] int32 labels: ids where supervised (assistant turns, or every non-vision token), else -100."""
    if train_on == "assistant":
        keep = assistant_mask.copy()
    else:
        keep = (ids != image_token_id) & (ids != video_token_id)
    keep[:1] = False
    return np.where(keep, ids, IGNORE).astype(np.int32)


def safe_cut(
    ids: np.ndarray, max_len: int, image_token_id: int, vision_start_id: int, vision_end_id: int
) -> int:
    """Largest cut <= max_len that does not split an image block <|vision_start|> pads <|vision_end|>."""
    cut = min(max_len, len(ids))
    if cut == len(ids):
        return cut
    pads = np.flatnonzero(ids == image_token_id)
    if not len(pads):
        return cut
    starts = pads[np.r_[True, np.diff(pads) > 1]]  # first pad of each run
    ends = pads[np.r_[np.diff(pads) > 1, True]] + 1  # one past the last pad of each run
    for a, b in zip(starts, ends):
        block_start = a - 1 if a > 0 and ids[a - 1] == vision_start_id else a
        block_end = b + 1 if b < len(ids) and ids[b] == vision_end_id else b
        if block_start < cut < block_end:
            return int(block_start)
    return cut


def truncate(ids, labels, vision: dict, max_len: int, ops: Ops):
    """Cuts a sample to <= max_len tokens without splitting an image; drops the images cut off.

    -> (ids [L'], labels [L'], vision with the kept images only).
    """
    cut = safe_cut(ids, max_len, ops.image_token_id, ops.vision_start_id, ops.vision_end_id)
    ids, labels = ids[:cut], labels[:cut]
    grid = vision["image_grid_thw"]
    if not len(grid):
        return ids, labels, vision
    per_image = grid.prod(axis=1) // ops.merge_size**2
    kept_tokens = int((ids == ops.image_token_id).sum())
    n_kept = int(np.searchsorted(np.cumsum(per_image), kept_tokens, side="right"))
    rows = int(grid[:n_kept].prod(axis=1).sum())
    return (
        ids,
        labels,
        {**vision, "pixel_values": vision["pixel_values"][:rows], "image_grid_thw": grid[:n_kept]},
    )
