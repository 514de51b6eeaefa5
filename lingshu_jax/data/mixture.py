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
all hosts see the same mixture). With the block-local shuffle on several hosts, a host reads only its own
row groups instead: each shuffled source gives every host a span of each epoch's block order (shuffle.py;
the same epoch length as the strided share), and each host mixes its own spans by the same weights, cut at
its strided share of `num_samples`. `shard_from_jax()` gives (jax.process_index(), jax.process_count()).
"""

from __future__ import annotations

import functools

import grain
import numpy as np

from lingshu_jax.data.config import DataConfig
from lingshu_jax.data.shuffle import BlockShuffleMapDataset, check_shard


def _tag(raw: dict, source: int) -> dict:
    return {**raw, "source": source}


def build_mixture(
    sources: list, cfg: DataConfig, seed: int, shard_index: int = 0, shard_count: int = 1
) -> grain.MapDataset:
    """sources[i]: random-access raw-record source of cfg.sources[i] -> host `shard_index`'s share of the
    mixed MapDataset (ValueError on bad shard arguments)."""
    check_shard(shard_index, shard_count)
    datasets = [
        grain.MapDataset.source(src).map(functools.partial(_tag, source=i)) for i, src in enumerate(sources)
    ]
    for ds, sc in zip(datasets, cfg.sources):
        if len(ds) == 0:
            raise ValueError(f"data.sources[{sc.name}]: no records")
    host = (shard_index, shard_count)
    weighted = any(sc.weight is not None for sc in cfg.sources)
    if not weighted:
        ds = grain.MapDataset.concatenate(datasets) if len(datasets) > 1 else datasets[0]
        if not (cfg.shuffle and _block_local(sources, cfg)):
            ds = ds.shuffle(seed=seed) if cfg.shuffle else ds
            return shard(ds.repeat(cfg.epochs), *host)
        return _block_shuffled(ds, sources, cfg, seed, *host).repeat(cfg.epochs)
    # Per-host spans of each source when any is block-shuffled on several hosts, else the strided share.
    by_host = cfg.shuffle and shard_count > 1 and any(_block_local([s], cfg) for s in sources)
    parts = []
    for i, ds in enumerate(datasets):
        part_seed = seed + 7919 * (i + 1)
        if cfg.shuffle and _block_local([sources[i]], cfg):
            ds = _block_shuffled(ds, [sources[i]], cfg, part_seed, *(host if by_host else (0, 1)))
        else:
            ds = ds.shuffle(seed=part_seed) if cfg.shuffle else ds
            ds = shard(ds, *host) if by_host else ds
        parts.append(ds.repeat())
    weights = [sc.weight if sc.weight is not None else 1.0 for sc in cfg.sources]
    mixed = grain.MapDataset.mix(parts, weights)
    total = cfg.num_samples or (cfg.epochs * sum(len(ds) for ds in datasets) if cfg.epochs else None)
    if by_host:
        return mixed[: len(range(shard_index, total, shard_count))] if total else mixed
    return shard(mixed[:total] if total else mixed, *host)


def _block_local(sources: list, cfg: DataConfig) -> bool:
    """Whether records of `sources` are shuffled block-locally (a window set and a Parquet source)."""
    return bool(cfg.parquet_shuffle_window) and any(hasattr(s, "block_rows") for s in sources)


def _block_shuffled(
    ds: grain.MapDataset, sources: list, cfg: DataConfig, seed: int, shard_index: int, shard_count: int
) -> BlockShuffleMapDataset:
    """Host `shard_index`'s share of `ds` (the records of `sources` in order, one of them Parquet) in the
    block-local shuffled order of each epoch (ValueError when the window's row groups do not fit the
    decoded row group cache)."""
    window = cfg.parquet_shuffle_window
    columnar = [s for s in sources if hasattr(s, "block_rows")]
    largest = max(s.max_block_bytes for s in columnar)
    if 2 * window * largest > cfg.parquet_cache_mb << 20:
        raise ValueError(
            f"data.parquet_shuffle_window={window}: two windows of row groups up to {largest / 2**20:.1f} MiB "
            f"do not fit data.parquet_cache_mb={cfg.parquet_cache_mb}; lower the window or raise the cache"
        )
    blocks = np.concatenate(
        [np.asarray(s.block_rows) if hasattr(s, "block_rows") else np.ones(len(s), np.int64) for s in sources]
    )
    return BlockShuffleMapDataset(ds, blocks, window, seed, shard_index, shard_count)


def shard(ds: grain.MapDataset, shard_index: int, shard_count: int) -> grain.MapDataset:
    """Records shard_index, shard_index + shard_count, ... of `ds` (ValueError on bad arguments)."""
    check_shard(shard_index, shard_count)
    return ds[shard_index::shard_count] if shard_count > 1 else ds


def shard_from_jax() -> tuple[int, int]:
    """(process_index, process_count) of this JAX process: one data shard per host."""
    import jax

    return jax.process_index(), jax.process_count()
