"""Multimodal packing and batching: samples -> fixed-shape batches (DESIGN.md "Model inputs").

`BatchBuilder` places samples first-fit into `batch_size` rows of `seq_len` tokens (at most
`segments_per_row` samples per row; 1 = unpacked) under one vision-patch budget for the whole batch. A
sample that fits in no row, or whose patches would overflow the budget, closes the batch and opens the next.
Batch (B rows, S tokens, N = patch_budget)::

  input_ids [B, S] int32 (pad id), segment_ids [B, S] int32 (0 pad, 1.. sample in row),
  position_ids [3, B, S] int32 (each segment's own M-RoPE ids; 0 on padding),
  labels [B, S] int32 (-100 outside supervised tokens), loss_mask [B, S] float32 (labels != -100),
  pixel_values [N, 1176] uint8 (or f32), vision_pos [N, 2], window_segments [N], frame_segments [N] int32,
  vision_token_index [B, S] int32                              (vision keys only when patch_budget > 0)
  pixel_scale, pixel_offset [1176] f32                         (with uint8 pixel_values: the model's
                                                                normalisation, PixelNormalization)
  stats {counter: number}                                      (popped by the pipeline iterator)

Images and videos are concatenated in flattened batch order (row, then position) and window-permuted and padded by
`model.vision_inputs` once per batch; padding rows are zeros (they form their own segment). Attention
confinement is the model's job: it masks on segment_ids.

`PackIterDataset` wraps this as a grain IterDataset that runs in the main process after `mp_prefetch`
(so batches do not depend on the worker count) and fills a pool of several batches at once. grain's own
`FirstFitPackIterDataset` packs each feature into per-row buffers; it has no per-*batch* budget for a
second (vision) stream whose rows belong to samples in any row, so we pack here with grain's algorithm
and state discipline (parent state before the pool + number of batches already emitted: exact resume).
"""

from __future__ import annotations

from collections.abc import Mapping

import grain
import numpy as np

from lingshu_jax.data.errors import add_stats, is_skip
from lingshu_jax.data.guard import DataInterrupted, SourceGuard, StopRequest
from lingshu_jax.model import vision_inputs
from lingshu_jax.model.vlm import concat_vision_chunks
from lingshu_jax.processing.image import PIXEL_AFFINE_KEYS, PixelNormalization

IGNORE = -100


class BatchBuilder:
    """First-fit placement of samples into one batch; `build()` returns the batch dict.

    `pixel_normalization`: set when samples carry uint8 pixel rows; the batch then holds them as uint8 with
    its pixel_scale/pixel_offset arrays (float32 rows otherwise).
    """

    def __init__(
        self,
        *,
        batch_size: int,
        seq_len: int,
        patch_budget: int,
        segments_per_row: int,
        pad_id: int,
        image_token_id: int,
        video_token_id: int,
        merge_size: int,
        window_merge_units: int,
        pixel_normalization: PixelNormalization | None = None,
        vision_chunks: int = 1,
    ):
        self.b, self.s, self.budget, self.max_segments = batch_size, seq_len, patch_budget, segments_per_row
        window = merge_size**2 * window_merge_units**2
        if vision_chunks > 1 and (batch_size % vision_chunks or patch_budget % (vision_chunks * window)):
            raise ValueError(
                f"data.vision_chunks={vision_chunks}: must divide this host's batch_size={batch_size} rows "
                f"and its patch_budget={patch_budget} into chunks of whole {window}-row windows"
            )
        # The stream is `vision_chunks` equal chunks; chunk c holds the images of rows [c R, (c + 1) R) only,
        # so no image crosses a chunk (a device's shard of the stream: per-device full attention is exact).
        self.chunks, self.chunk_budget = vision_chunks, patch_budget // vision_chunks
        self.rows_per_chunk = batch_size // vision_chunks
        self.pad_id, self.image_token_id, self.video_token_id = pad_id, image_token_id, video_token_id
        self.merge_size, self.window_merge_units = merge_size, window_merge_units
        self.pixel_normalization = pixel_normalization
        self.pixel_dtype = np.dtype(np.float32 if pixel_normalization is None else np.uint8)
        self.rows: list[list[Mapping]] = [[] for _ in range(batch_size)]
        self.used = np.zeros(batch_size, np.int64)
        self.patches = np.zeros(vision_chunks, np.int64)  # stream rows taken per chunk (whole windows)
        self.real_patches = 0
        self.sample_stats: dict = {}

    @property
    def empty(self) -> bool:
        return not any(self.rows)

    def stream_rows(self, sample: Mapping) -> int:
        """Vision-stream rows of `sample`'s images: windows padded whole (`vision_inputs.stream_rows`)."""
        return vision_inputs.stream_rows(
            sample["image_grid_thw"],
            spatial_merge_size=self.merge_size,
            window_merge_units=self.window_merge_units,
        )

    def check(self, sample: Mapping) -> None:
        """ValueError if `sample` cannot fit even an empty batch (the transform should have prevented it)."""
        n, p = len(sample["input_ids"]), self.stream_rows(sample)
        if n > self.s or p > self.chunk_budget:
            chunks = f" / {self.chunks} vision_chunks" if self.chunks > 1 else ""
            raise ValueError(
                f"sample of {n} tokens / {p} patches cannot fit seq_len {self.s} / patch_budget "
                f"{self.budget}{chunks}"
            )

    def add(self, sample: Mapping) -> bool:
        """Places `sample` in the first row with room; False (nothing changed) when the batch is full."""
        n, p = len(sample["input_ids"]), self.stream_rows(sample)
        if self.chunks == 1 and self.patches[0] + p > self.budget:
            return False  # the batch's patch budget is spent: close it (a later row cannot help)
        for row in range(self.b):
            chunk = row // self.rows_per_chunk
            if (
                self.used[row] + n <= self.s
                and len(self.rows[row]) < self.max_segments
                and self.patches[chunk] + p <= self.chunk_budget
            ):
                self.rows[row].append(sample)
                self.used[row] += n
                self.patches[chunk] += p
                self.real_patches += len(sample["pixel_values"])
                add_stats(self.sample_stats, sample.get("stats", {}))
                return True
        return False

    def build(self) -> dict:
        b, s = self.b, self.s
        batch = {
            "input_ids": np.full((b, s), self.pad_id, np.int32),
            "segment_ids": np.zeros((b, s), np.int32),
            "position_ids": np.zeros((3, b, s), np.int32),
            "labels": np.full((b, s), IGNORE, np.int32),
        }
        pixels, grids = [[] for _ in range(self.chunks)], [[] for _ in range(self.chunks)]
        for r, row in enumerate(self.rows):
            off = 0
            for k, sample in enumerate(row):
                n = len(sample["input_ids"])
                batch["input_ids"][r, off : off + n] = sample["input_ids"]
                batch["labels"][r, off : off + n] = sample["labels"]
                batch["segment_ids"][r, off : off + n] = k + 1
                batch["position_ids"][:, r, off : off + n] = sample["position_ids"]
                pixels[r // self.rows_per_chunk].append(sample["pixel_values"])
                grids[r // self.rows_per_chunk].append(sample["image_grid_thw"])
                off += n
        batch["loss_mask"] = (batch["labels"] != IGNORE).astype(np.float32)
        if self.budget:
            batch.update(self._vision_chunks(batch["input_ids"], pixels, grids))
        batch["stats"] = self._stats(batch)
        return batch

    def _vision_chunks(self, input_ids: np.ndarray, pixels: list, grids: list) -> dict:
        """The stream as `chunks` streams of chunk_budget rows concatenated: segment ids and merged-token
        indices offset so that they stay unique across chunks."""
        r = self.rows_per_chunk
        parts = [
            self._vision(input_ids[c * r : (c + 1) * r], pixels[c], grids[c], self.chunk_budget)
            for c in range(self.chunks)
        ]
        return concat_vision_chunks(parts, self.chunk_budget, self.merge_size**2)

    def _vision(self, input_ids: np.ndarray, pixels: list, grids: list, budget: int) -> dict:
        """The batch's vision stream. `vision_inputs` computes the layout (window order, rotary ids, segments,
        padding) from the grids; we hand it zero-width pixel rows so that it moves no pixel data, then gather
        the real rows straight into the padded [budget, 1176] output: one copy of the pixels per batch."""
        dim = pixels[0].shape[1] if pixels else 1176
        grid = np.concatenate(grids).reshape(-1, 3) if grids else np.zeros((0, 3), np.int32)
        n = int(grid.prod(axis=1).sum()) if len(grid) else 0
        layout = np.zeros((n, 0), np.float32)
        if n:
            stream = vision_inputs.build_vision_stream(
                layout,
                grid,
                spatial_merge_size=self.merge_size,
                window_merge_units=self.window_merge_units,
                patch_budget=budget,
            )
        else:  # a text-only batch: an all-padding stream
            stream = vision_inputs.pad_vision_stream(
                vision_inputs.VisionStream(
                    pixel_values=layout,
                    vision_pos=np.zeros((0, 2), np.int32),
                    window_segments=np.zeros(0, np.int32),
                    frame_segments=np.zeros(0, np.int32),
                    unit_position=np.zeros(0, np.int32),
                    num_real_patches=0,
                ),
                budget,
            )
        out = {k: np.asarray(v, np.int32) for k, v in stream.as_dict().items() if k != "pixel_values"}
        out["pixel_values"] = self._gather_pixels(pixels, stream.unit_position, dim, budget)
        if self.pixel_normalization is not None:
            out.update(self.pixel_normalization.batch_arrays(dim))
        # Each sample's images and videos are in its stream in order of appearance (transforms.py), so every
        # vision pad token, image or video, takes the next unit in flattened batch order.
        vision_pads = np.where(input_ids == self.video_token_id, self.image_token_id, input_ids)
        out["vision_token_index"] = vision_inputs.vision_token_index(
            vision_pads,
            stream.unit_position,
            image_token_id=self.image_token_id,
            video_token_id=self.video_token_id,
            num_image_units=n // self.merge_size**2,
        )
        return out

    def _gather_pixels(self, pixels: list, unit_position: np.ndarray, dim: int, budget: int) -> np.ndarray:
        """[budget, dim] (pixel_dtype): each sample's merge units moved to their stream rows (padding zero)."""
        unit = self.merge_size**2
        out = np.zeros((budget, dim), self.pixel_dtype)  # (fresh zero pages: padding is never written)
        dst = out.reshape(-1, unit * dim)
        start = 0
        for pix in pixels:
            units = len(pix) // unit
            if not units:
                continue
            if pix.dtype != self.pixel_dtype:
                raise ValueError(
                    f"{pix.dtype} pixel rows in a {self.pixel_dtype} batch (a builder with "
                    "pixel_normalization takes uint8 rows, one without takes float32 rows)"
                )
            dst[unit_position[start : start + units]] = pix.reshape(units, unit * dim)
            start += units
        return out

    def _stats(self, batch: dict) -> dict:
        return {
            **self.sample_stats,
            "batches": 1,
            "rows": self.b,
            "segments": sum(len(r) for r in self.rows),
            "tokens/real": int(self.used.sum()),
            "tokens/total": self.b * self.s,
            "tokens/supervised": int(batch["loss_mask"].sum()),
            "patches/real": int(self.real_patches),
            "patches/stream": int(self.patches.sum()),
            "patches/total": int(self.budget),
        }


class PackIterDataset(grain.IterDataset):
    """grain IterDataset: samples (and skip records) -> packed batches.

    `pool` batches are filled at once (first fit over all their rows, each batch under its own patch
    budget), like grain's multi-bin packers: a sample that fits nowhere closes the pool, whose batches are
    then emitted in order. A bigger pool packs tighter and reorders samples within a window of `pool`
    batches. `builder_kwargs` as BatchBuilder.
    """

    def __init__(
        self,
        parent: grain.IterDataset,
        *,
        pool: int = 1,
        guard: SourceGuard | None = None,
        stop: StopRequest | None = None,
        **builder_kwargs,
    ):
        super().__init__(parent)
        if pool < 1:
            raise ValueError(f"packing pool must be >= 1, got {pool}")
        self._pool = pool
        self._builder_kwargs = builder_kwargs
        self._guard, self._stop = guard, stop

    def __iter__(self) -> "PackIterator":
        parent = self._parent.__iter__()
        return PackIterator(parent, self._pool, self._builder_kwargs, self._guard, self._stop)

    def __str__(self) -> str:
        return f"PackIterDataset(pool={self._pool}, {self._builder_kwargs})"


class PackIterator(grain.DatasetIterator):
    """Exact-resume state: {"parent": parent state before the pool being emitted, "emitted": batches of
    that pool already returned}. Restoring re-packs that pool (deterministically) and skips `emitted`.

    Endings (guard.py): `stop()` true -> DataInterrupted, the state stays that before the pool; a source
    rejected for a full pass -> ValueError; a finite stream's skip records after its last batch come out as
    one stats-only item {"stats": ..., "stats_only": True} so their counts are not lost."""

    def __init__(
        self,
        parent: grain.DatasetIterator,
        pool: int,
        builder_kwargs: dict,
        guard: SourceGuard | None = None,
        stop: StopRequest | None = None,
    ):
        super().__init__(parent)
        self._pool, self._builder_kwargs = pool, builder_kwargs
        self._guard, self._stop = guard, stop
        self._watch = guard.watch() if guard else None
        self._interrupted_state = None  # the state to report after a DataInterrupted
        self._carry = self._carry_state = (
            None  # the sample that closed the last pool, and the state before it
        )
        self._ready: list[dict] = []  # built batches of the current pool not yet returned
        self._pool_state, self._emitted = None, 0

    def __next__(self) -> dict:
        if not self._ready:
            self._fill_pool()
        self._emitted += 1
        return self._ready.pop(0)

    def _fill_pool(self) -> None:
        start = self._carry_state if self._carry is not None else self._parent.get_state()
        builders = [BatchBuilder(**self._builder_kwargs) for _ in range(self._pool)]
        skipped: dict = {}
        pending, self._carry, self._carry_state = self._carry, None, None
        self._interrupted_state = None
        while True:
            if self._stop is not None and self._stop():
                self._interrupted_state = {"parent": start, "emitted": 0}
                raise DataInterrupted("stop requested while waiting for data")
            if pending is not None:
                sample, state, pending = pending, None, None
            else:
                state = self._parent.get_state()
                try:
                    sample = next(self._parent)
                except StopIteration:
                    break
            if is_skip(sample):
                add_stats(skipped, sample["stats"])
                if self._watch is not None:
                    self._watch.saw_skip(sample)
                continue
            builders[0].check(sample)
            if self._watch is not None:
                self._watch.saw_sample(sample.get("stats", {}))
            if not any(b.add(sample) for b in builders):
                self._carry, self._carry_state = sample, state
                break
        batches = [b.build() for b in builders if not b.empty]
        if not batches:
            if self._watch is not None:
                self._watch.at_end()
            if not skipped:
                raise StopIteration
            batches = [{"stats": skipped, "stats_only": True}]  # the counts of a tail of skip records
        else:
            add_stats(batches[0]["stats"], skipped)
        self._ready, self._pool_state, self._emitted = batches, start, 0

    def get_state(self) -> dict:
        if self._interrupted_state is not None:
            return self._interrupted_state
        if self._ready:
            return {"parent": self._pool_state, "emitted": self._emitted}
        parent = self._carry_state if self._carry is not None else self._parent.get_state()
        return {"parent": parent, "emitted": 0}

    def set_state(self, state: dict) -> None:
        self._parent.set_state(state["parent"])
        self._carry = self._carry_state = None
        self._interrupted_state = None
        self._watch = self._guard.watch(resumed=True) if self._guard else None
        self._ready, self._emitted = [], 0
        if state.get("emitted", 0):
            self._fill_pool()
            self._ready = self._ready[state["emitted"] :]
            self._emitted = state["emitted"]


def packing_efficiency(stats: Mapping) -> float:
    """Real tokens / row tokens over the batches counted in `stats`."""
    return stats.get("tokens/real", 0) / max(stats.get("tokens/total", 0), 1)


def unpack_batch(batch: Mapping, merge_size: int = 2, window_merge_units: int = 4) -> list[dict]:
    """Packed batch -> its samples as standalone single-sequence inputs, in (row, segment) order.

    Each dict: input_ids, labels, segment_ids (ones), loss_mask [L]; position_ids [3, L]; and, when the batch
    has a vision stream, that sample's own stream in window order (pixel_values [n, 1176], vision_pos,
    window_segments, frame_segments renumbered from 0) with vision_token_index [L] re-based onto it, and
    the batch's pixel_scale/pixel_offset [1176] when its pixels are uint8.
    Add a leading batch axis to feed one to the model ([1, L]; position_ids [3, 1, L]; not the vision
    stream, nor pixel_scale/pixel_offset).
    """
    out, window_units = [], window_merge_units**2
    segment_ids = np.asarray(batch["segment_ids"])
    for r in range(segment_ids.shape[0]):
        for seg in np.unique(segment_ids[r][segment_ids[r] > 0]):
            cols = np.flatnonzero(segment_ids[r] == seg)
            sample = {k: np.asarray(batch[k])[r, cols] for k in ("input_ids", "labels", "loss_mask")}
            sample["segment_ids"] = np.ones(len(cols), np.int32)
            sample["position_ids"] = np.asarray(batch["position_ids"])[:, r, cols]
            if "vision_token_index" in batch:
                sample.update(
                    _unpack_vision(
                        batch, np.asarray(batch["vision_token_index"])[r, cols], merge_size**2, window_units
                    )
                )
            out.append(sample)
    return out


def _unpack_vision(batch: Mapping, token_index: np.ndarray, unit: int, window_units: int) -> dict:
    real = token_index[token_index >= 0]  # stream rows (merge units) of this sample's merged tokens
    if len(real):  # the sample's whole window blocks, padding included (windows stay 64-row blocks)
        first, last = real.min() // window_units, real.max() // window_units + 1
        units = np.arange(first * window_units, last * window_units)
    else:
        units = np.zeros(0, np.int64)
    rows = (units[:, None] * unit + np.arange(unit)).reshape(-1)
    renumber = lambda x: np.unique(x, return_inverse=True)[1].astype(np.int32).reshape(-1)  # noqa: E731
    return {
        **{k: np.asarray(batch[k]) for k in PIXEL_AFFINE_KEYS if k in batch},
        "pixel_values": np.asarray(batch["pixel_values"])[rows],
        "vision_pos": np.asarray(batch["vision_pos"])[rows],
        "window_segments": renumber(np.asarray(batch["window_segments"])[rows]),
        "frame_segments": renumber(np.asarray(batch["frame_segments"])[rows]),
        "vision_token_index": np.where(token_index >= 0, np.searchsorted(units, token_index), -1).astype(
            np.int32
        ),
    }
