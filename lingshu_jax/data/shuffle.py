"""Block-local shuffle: a seeded per-epoch order that keeps reads inside a few decoded blocks at a time.

A global per-record shuffle of a Parquet source decodes one whole row group per record read. Here the
records are grouped into blocks (a Parquet source's row groups; every record of another source is a block
of its own), the blocks are put in a shuffled order, and the records are shuffled within each window of
`window` consecutive blocks of that order. Reading in this order needs at most `window` row groups of a
window decoded at once (plus the previous window's while workers overlap), so a cache of a few windows
never thrashes, while single-record blocks (JSONL, ...) are still shuffled globally.

The order is a pure function of (seed, epoch, block sizes): positions map to records without state, so
grain's iterator state (a position) resumes it exactly, on any worker count.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import grain
import numpy as np


class BlockShuffleMapDataset(grain.MapDataset):
    """`parent` (whose records fall into consecutive blocks of `block_rows` records) in the block-local
    shuffled order of each epoch; index `e * len + i` is position i of epoch e (as grain's shuffle)."""

    def __init__(self, parent: grain.MapDataset, block_rows: Sequence[int], window: int, seed: int):
        super().__init__(parent)
        self._rows = np.asarray(block_rows, np.int64)
        if self._rows.sum() != len(parent):
            raise ValueError(f"block sizes sum to {self._rows.sum()}, the dataset has {len(parent)} records")
        if window < 1:
            raise ValueError(f"window={window}: need >= 1 block")
        self._starts = np.concatenate([[0], np.cumsum(self._rows)[:-1]])
        self._window, self._seed = int(window), int(seed)
        self._cache: dict = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._parent)

    def __str__(self) -> str:
        return f"BlockShuffleMapDataset(window={self._window})"

    def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """-> (blocks in this epoch's order, first position of each window of that order)."""
        key = ("epoch", epoch)
        with self._lock:
            if key not in self._cache:
                if len(self._cache) > 64:
                    self._cache.clear()
                order = np.random.default_rng([self._seed, epoch]).permutation(len(self._rows))
                ends = np.cumsum(self._rows[order])
                window_starts = np.concatenate([[0], ends[self._window - 1 :: self._window]])[
                    : -(-len(order) // self._window)
                ]
                self._cache[key] = (order, window_starts)
            return self._cache[key]

    def _window_records(self, epoch: int, w: int) -> np.ndarray:
        """Record indices of window w of the epoch, in their shuffled order."""
        key = ("window", epoch, w)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        order, _ = self._epoch(epoch)
        blocks = order[w * self._window : (w + 1) * self._window]
        records = np.concatenate(
            [np.arange(s, s + n) for s, n in zip(self._starts[blocks], self._rows[blocks])]
        )
        records = np.random.default_rng([self._seed, epoch, w + 1]).permutation(records)
        with self._lock:
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[key] = records
        return records

    def shuffled_index(self, index: int) -> int:
        """The parent index read at position `index` (epoch * len + record)."""
        n = len(self._parent)
        epoch, i = divmod(int(index), n)
        _, window_starts = self._epoch(epoch)
        w = int(np.searchsorted(window_starts, i, side="right")) - 1
        return int(self._window_records(epoch, w)[i - int(window_starts[w])]) + epoch * n

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        return self._parent[self.shuffled_index(index)]

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_lock")
        state["_cache"] = {}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()
