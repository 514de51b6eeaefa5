"""Per-sample transform (runs in grain workers): raw record -> training sample, or a skip record.

Sample (all numpy; L <= seq_len, P patch rows, n images)::

  input_ids      [L] int32
  labels         [L] int32      -100 except supervised tokens (HF convention: unshifted; labels[0] = -100)
  position_ids   [3, L] int32   M-RoPE ids of the sample on its own (start at 0)
  pixel_values   [P, 1176] u8   transformers' row order (window permutation happens per batch); the
                                resized image's values (normalised by the model), or normalised
                                float32 rows under pixel_dtype="float32"
  image_grid_thw [n, 3] int32
  stats          {counter: int}  e.g. {"samples": 1, "samples/<source>": 1, "truncated": 1}

`labels[0] = -100` keeps a packed row exact: the last token of one segment never learns to predict the
first token of the next. Unpacked, position 0 is never a target anyway, so nothing changes.
"""

from __future__ import annotations

import dataclasses
import os
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
        messages, refs = formats.to_messages(record, where)
        vision = self._images(refs, self.roots[source], where)
        encoded = self._encode(messages, vision, where)
        ids = np.asarray(encoded["input_ids"], np.int32).reshape(-1)
        mask = np.asarray(encoded["assistant_mask"], bool).reshape(-1)
        labels = make_labels(ids, mask, self.train_on, self.ops.image_token_id, self.ops.video_token_id)
        stats = {"samples": 1, f"samples/{self.names[source]}": 1}
        if len(ids) > self.seq_len:
            if self.truncation == "drop":
                raise DataError(
                    errors.TOO_LONG, f"{len(ids)} tokens > seq_len {self.seq_len} (truncation='drop')", where
                )
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
        positions = self.ops.rope_index(ids[None], grid if len(grid) else None)
        return {
            "input_ids": ids,
            "labels": labels,
            "position_ids": np.asarray(positions, np.int32).reshape(3, -1),
            "pixel_values": vision["pixel_values"],
            "image_grid_thw": grid,
            "stats": stats,
        }

    def _images(self, refs: list, root: str, where: str) -> dict:
        """Loads + processes the images -> {"pixel_values" [P, 1176] u8|f32, "image_grid_thw" [n, 3] i32}."""
        if not refs:
            return empty_vision()
        images = [load_one(self.ops, ref, root, where) for ref in refs]
        try:
            out = self.ops.process_images(images)
        except Exception as e:  # noqa: BLE001 -- degenerate image (aspect ratio, no pixels...)
            raise DataError(errors.CORRUPT_IMAGE, f"image processing failed: {e}", where) from None
        pixels = np.asarray(out["pixel_values"])  # uint8, or float32 under pixel_dtype="float32"
        return {
            "pixel_values": pixels if pixels.dtype == np.uint8 else pixels.astype(np.float32, copy=False),
            "image_grid_thw": np.asarray(out["image_grid_thw"], np.int32).reshape(-1, 3),
        }

    def _encode(self, messages: list, vision: dict, where: str) -> dict:
        image_inputs = vision if len(vision["image_grid_thw"]) else None
        try:
            return self.ops.encode(messages, image_inputs)
        except ValueError as e:  # template errors, placeholder/image count mismatches
            raise DataError(errors.BAD_RECORD, f"cannot render the conversation: {e}", where) from None


def empty_vision() -> dict:
    return {"pixel_values": np.zeros((0, 1176), np.float32), "image_grid_thw": np.zeros((0, 3), np.int32)}


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
    return ids, labels, {"pixel_values": vision["pixel_values"][:rows], "image_grid_thw": grid[:n_kept]}
