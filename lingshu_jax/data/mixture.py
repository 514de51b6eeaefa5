"""Sources -> one globally ordered, sharded grain MapDataset of raw records.

Two modes, both deterministic functions of (config, seed), computed before any worker exists (so the
record order does not depend on the worker count):
- concatenate (no source has a weight): all records, one global shuffle per epoch (grain reseeds each
  epoch), `epochs` passes (None = forever).
With `parquet_shuffle_window` k >= 1 and a Parquet source, the shuffle is block-local instead (shuffle.py):
row groups in a shuffled order, rows shuffled within k consecutive row groups (other sources' records are
blocks of one record, so they stay globally shuffled).
- mix (weights given): each source shuffled per its own epoch and repeated forever, then interleaved by
  `MapDataset.mix` in proportion to the weights; the stream is cut at `num_samples` (default
  epochs * total records; None epochs = forever).
Per-host sharding takes every `shard_count`-th record from `shard_index` (after mixing and shuffling, so
all hosts see the same mixture). `shard_from_jax()` gives (jax.process_index(), jax.process_count()).
"""

from __future__ import annotations

import functools

import grain
import numpy as np

from lingshu_jax.data.config import DataConfig
from lingshu_jax.data.shuffle import BlockShuffleMapDataset


def _tag(raw: dict, source: int) -> dict:
    return {**raw, "source": source}


def build_mixture(sources: list, cfg: DataConfig, seed: int) -> grain.MapDataset:
    """sources[i]: random-access raw-record source of cfg.sources[i] -> mixed (unsharded) MapDataset."""
    datasets = [
        grain.MapDataset.source(src).map(functools.partial(_tag, source=i)) for i, src in enumerate(sources)
    ]
    for ds, sc in zip(datasets, cfg.sources):
        if len(ds) == 0:
            raise ValueError(f"data.sources[{sc.name}]: no records")
    weighted = any(sc.weight is not None for sc in cfg.sources)
    if not weighted:
        ds = grain.MapDataset.concatenate(datasets) if len(datasets) > 1 else datasets[0]
        if cfg.shuffle:
            ds = _shuffled(ds, sources, cfg, seed)
        return ds.repeat(cfg.epochs)
    parts = []
    for i, ds in enumerate(datasets):
        parts.append(
            (_shuffled(ds, [sources[i]], cfg, seed + 7919 * (i + 1)) if cfg.shuffle else ds).repeat()
        )
    weights = [sc.weight if sc.weight is not None else 1.0 for sc in cfg.sources]
    mixed = grain.MapDataset.mix(parts, weights)
    total = cfg.num_samples or (cfg.epochs * sum(len(ds) for ds in datasets) if cfg.epochs else None)
    return mixed[:total] if total else mixed


def _shuffled(ds: grain.MapDataset, sources: list, cfg: DataConfig, seed: int) -> grain.MapDataset:
    """`ds` (the records of `sources` in order) shuffled per epoch: globally, or block-locally when
    parquet_shuffle_window is set and one of the sources is Parquet (ValueError when the window's row
    groups do not fit the decoded row group cache)."""
    window = cfg.parquet_shuffle_window
    columnar = [s for s in sources if hasattr(s, "block_rows")]
    if not window or not columnar:
        return ds.shuffle(seed=seed)
    largest = max(s.max_block_bytes for s in columnar)
    if 2 * window * largest > cfg.parquet_cache_mb << 20:
        raise ValueError(
            f"data.parquet_shuffle_window={window}: two windows of row groups up to {largest / 2**20:.1f} MiB "
            f"do not fit data.parquet_cache_mb={cfg.parquet_cache_mb}; lower the window or raise the cache"
        )
    blocks = np.concatenate(
        [np.asarray(s.block_rows) if hasattr(s, "block_rows") else np.ones(len(s), np.int64) for s in sources]
    )
    return BlockShuffleMapDataset(ds, blocks, window, seed)


def shard(ds: grain.MapDataset, shard_index: int, shard_count: int) -> grain.MapDataset:
    """Records shard_index, shard_index + shard_count, ... of `ds` (ValueError on bad arguments)."""
    if shard_count < 1 or not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index={shard_index} / shard_count={shard_count}: need 0 <= index < count")
    return ds[shard_index::shard_count] if shard_count > 1 else ds


def shard_from_jax() -> tuple[int, int]:
    """(process_index, process_count) of this JAX process: one data shard per host."""
    import jax

    return jax.process_index(), jax.process_count()
