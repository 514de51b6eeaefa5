"""Block-local shuffle: a seeded per-epoch order that keeps reads inside a few decoded blocks at a time.

A global per-record shuffle of a Parquet source decodes one whole row group per record read. Here the
records are grouped into blocks (a Parquet source's row groups; every record of another source is a block
of its own), the blocks are put in a shuffled order, and the records are shuffled within each window of
`window` consecutive blocks of that order. Reading in this order needs at most `window` row groups of a
window decoded at once (plus the previous window's while workers overlap), so a cache of a few windows
never thrashes, while single-record blocks (JSONL, ...) are still shuffled globally.

Hosts (`shard_index` of `shard_count`): each epoch's shuffled block order, read as one sequence of
records, is cut into `shard_count` consecutive spans of records, host h taking the h-th (as many records
as `range(h, N, shard_count)` holds, so every host has a fixed epoch length); the blocks of a host's span
(the first and last possibly in part) are then windowed and shuffled as above. So a host decodes only its
own ~1/shard_count of the row groups (at most two shared with a neighbour per epoch), and the hosts' spans
partition the epoch: every record exactly once. One host reads the whole sequence (the single-host order).

The order is a pure function of (seed, epoch, block sizes, host): positions map to records without state,
so grain's iterator state (a position) resumes it exactly, on any worker count.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import grain
import numpy as np


def check_shard(shard_index: int, shard_count: int) -> None:
    """ValueError unless 0 <= shard_index < shard_count (a host's share of the data)."""
    if shard_count < 1 or not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index={shard_index} / shard_count={shard_count}: need 0 <= index < count")


class BlockShuffleMapDataset(grain.MapDataset):
    """This host's share of `parent` (whose records fall into consecutive blocks of `block_rows` records)
    in the block-local shuffled order of each epoch; index `e * len + i` is position i of epoch e (as
    grain's shuffle), `len` the host's records per epoch."""

    def __init__(
        self,
        parent: grain.MapDataset,
        block_rows: Sequence[int],
        window: int,
        seed: int,
        shard_index: int = 0,
        shard_count: int = 1,
    ):
        super().__init__(parent)
        self._rows = np.asarray(block_rows, np.int64)
        n = len(parent)
        if self._rows.sum() != n:
            raise ValueError(f"block sizes sum to {self._rows.sum()}, the dataset has {n} records")
        if window < 1:
            raise ValueError(f"window={window}: need >= 1 block")
        check_shard(shard_index, shard_count)
        self._starts = np.concatenate([[0], np.cumsum(self._rows)[:-1]])
        self._window, self._seed = int(window), int(seed)
        self._host = (int(shard_index), int(shard_count))
        # This host's span [begin, end) of each epoch's record sequence: as many records as range(h, n, count).
        spans = [len(range(h, n, shard_count)) for h in range(shard_count)]
        self._span = (sum(spans[:shard_index]), sum(spans[: shard_index + 1]))
        self._cache: dict = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._span[1] - self._span[0]

    def __str__(self) -> str:
        return f"BlockShuffleMapDataset(window={self._window}, host={self._host[0]}/{self._host[1]})"

    def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """-> (this host's blocks in this epoch's order, the first and one-past-last record of each inside
        its block, the first position of each window)."""
        key = ("epoch", epoch)
        with self._lock:
            if key not in self._cache:
                if len(self._cache) > 64:
                    self._cache.clear()
                order = np.random.default_rng([self._seed, epoch]).permutation(len(self._rows))
                rows = self._rows[order]
                ends = np.cumsum(rows)
                starts = ends - rows
                begin, end = self._span
                first = int(np.searchsorted(ends, begin, side="right"))
                last = int(np.searchsorted(starts, end, side="left"))
                lo = np.maximum(begin - starts[first:last], 0)
                hi = np.minimum(end - starts[first:last], rows[first:last])
                sizes = np.cumsum(hi - lo)
                count = -(-(last - first) // self._window)
                window_starts = np.concatenate([[0], sizes[self._window - 1 :: self._window]])[:count]
                self._cache[key] = (order[first:last], lo, hi, window_starts)
            return self._cache[key]

    def _window_records(self, epoch: int, w: int) -> np.ndarray:
        """Record indices of window w of the epoch (this host's), in their shuffled order."""
        key = ("window", epoch, w)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        blocks, lo, hi, _ = self._epoch(epoch)
        part = slice(w * self._window, (w + 1) * self._window)
        records = np.concatenate(
            [np.arange(s + a, s + b) for s, a, b in zip(self._starts[blocks[part]], lo[part], hi[part])]
        )
        host, count = self._host
        key_rng = [self._seed, epoch, w + 1] + ([host, count] if count > 1 else [])  # one host: as before
        records = np.random.default_rng(key_rng).permutation(records)
        with self._lock:
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[key] = records
        return records

    def shuffled_index(self, index: int) -> int:
        """The parent index read at position `index` (epoch * len + position in this host's epoch)."""
        epoch, i = divmod(int(index), len(self))
        window_starts = self._epoch(epoch)[3]
        w = int(np.searchsorted(window_starts, i, side="right")) - 1
        return int(self._window_records(epoch, w)[i - int(window_starts[w])]) + epoch * len(self._parent)

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
