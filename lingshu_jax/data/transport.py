"""How samples cross from grain worker processes to the main process, cheaply and in order.

grain's `mp_prefetch` pays a fixed cost per element (queue round trip, a shared-memory segment per array)
plus a cost per byte. Groups cut the first: the transform runs on `group` consecutive records (a
`MapDataset.batch` of raw records, so groups are defined by record index and the sample order stays
independent of the worker count) and ships one element per group, all pixel rows concatenated into one
array (one shared-memory segment); `UngroupIterDataset` splits groups back into samples in the main
process, with exact resume state. uint8 pixel rows (`DataConfig.pixel_dtype`, the default) cut the bytes
to a quarter of float32.
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
            sample["pixel_values"] = group["pixels"][start : start + n]
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
