"""How samples cross from grain worker processes to the main process, cheaply and in order.

grain's `mp_prefetch` pays a fixed cost per element (queue round trip, a shared-memory segment per array)
plus a cost per byte. Two measures cut both:

- Groups: the transform runs on `group` consecutive records (a `MapDataset.batch` of raw records, so
  groups are defined by record index and the sample order stays independent of the worker count) and
  ships one element per group, all pixel rows concatenated into one array (one shared-memory segment);
  `UngroupIterDataset` splits groups back into samples in the main process, with exact resume state.
- uint8 pixels (`pixel_transport="uint8"`): workers ship the resized image's patch rows as uint8, a
  quarter of the float32 bytes, and the packer normalises them while gathering into the batch through a
  [3, 256] lookup table computed by the image processor itself, so values are bit-identical to its float
  output (checked by tests/data/test_transport.py).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import grain
import numpy as np

from lingshu_jax.data.errors import is_skip


@dataclasses.dataclass(frozen=True)
class GroupTransform:
  """list of raw records -> {"samples": [samples without pixels], "pixels": [sum P, D] array}."""
  transform: Callable[[dict], dict]

  def __call__(self, raws: Sequence[dict]) -> dict:
    samples, pixels = [], []
    for raw in raws:
      sample = self.transform(raw)
      if not is_skip(sample):
        sample = dict(sample)
        pix = sample.pop("pixel_values")
        sample["pixel_rows"] = len(pix)
        if len(pix):  # (empty arrays may have another dtype: keep them out of the concatenation)
          pixels.append(pix)
      samples.append(sample)
    joined = np.concatenate(pixels) if pixels else np.zeros((0, 1176), np.float32)
    return {"samples": samples, "pixels": joined}


def split_group(group: dict) -> list[dict]:
  """Inverse of GroupTransform: samples with `pixel_values` as views into the group's pixel array."""
  out, start = [], 0
  for sample in group["samples"]:
    if not is_skip(sample):
      sample = dict(sample)
      n = sample.pop("pixel_rows")
      sample["pixel_values"] = group["pixels"][start:start + n]
      start += n
    out.append(sample)
  return out


class UngroupIterDataset(grain.IterDataset):
  """Groups -> samples, in order (main process)."""

  def __iter__(self) -> "UngroupIterator":
    return UngroupIterator(self._parent.__iter__())


class UngroupIterator(grain.DatasetIterator):
  """State: {"parent": state before the current group, "next": samples of it already returned}."""

  def __init__(self, parent: grain.DatasetIterator):
    super().__init__(parent)
    self._samples: list[dict] = []
    self._next = 0
    self._group_state = parent.get_state()

  def __next__(self) -> dict:
    while self._next >= len(self._samples):
      self._group_state = self._parent.get_state()
      self._samples, self._next = split_group(next(self._parent)), 0
    self._next += 1
    return self._samples[self._next - 1]

  def get_state(self) -> dict:
    if self._next >= len(self._samples):
      return {"parent": self._parent.get_state(), "next": 0}
    return {"parent": self._group_state, "next": self._next}

  def set_state(self, state: dict) -> None:
    self._parent.set_state(state["parent"])
    self._samples, self._next = [], 0
    self._group_state = state["parent"]
    if state["next"]:
      self._samples, self._next = split_group(next(self._parent)), state["next"]


# ------------------------------------------------------------------------------ uint8 pixels
@dataclasses.dataclass(frozen=True)
class Uint8Images:
  """process_images that returns uint8 patch rows: the processor stopped before rescale/normalise (its
  float rows then hold the exact uint8 values of the resized image)."""
  raw_processor: Callable

  @classmethod
  def wrap(cls, image_processor) -> "Uint8Images":
    return cls(dataclasses.replace(image_processor, do_rescale=False, do_normalize=False))

  def __call__(self, images) -> dict:
    out = self.raw_processor(images)
    return {**out, "pixel_values": np.asarray(out["pixel_values"]).astype(np.uint8)}


def pixel_lut(image_processor) -> np.ndarray:
  """[3, 256] float32: the processor's own output for every uint8 value of every channel.

  Rescale + normalise act on each value independently, so `lut[c, v]` is exactly the float the processor
  produces for value v in channel c (computed by its own `_prepare`, on a 1 x 256 image, no resize).
  """
  ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)  # [1, 256, 3]
  chw = image_processor._prepare(ramp, 1, 256)  # pylint: disable=protected-access  [3, 1, 256]
  return np.ascontiguousarray(np.asarray(chw, np.float32)[:, 0, :])


def normalize_rows(rows_u8: np.ndarray, lut: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
  """uint8 [P, 3 * k] patch rows (channel-major columns) -> float32 via lut [3, 256], into `out`."""
  out = np.empty(rows_u8.shape, np.float32) if out is None else out
  k = rows_u8.shape[1] // 3
  for c in range(3):
    np.take(lut[c], rows_u8[:, c * k:(c + 1) * k], out=out[:, c * k:(c + 1) * k], mode="clip")
  return out
