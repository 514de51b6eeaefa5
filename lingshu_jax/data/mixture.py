"""Sources -> one globally ordered, sharded grain MapDataset of raw records.

Two modes, both deterministic functions of (config, seed), computed before any worker exists (so the
record order does not depend on the worker count):
- concatenate (no source has a weight): all records, one global shuffle per epoch (grain reseeds each
  epoch), `epochs` passes (None = forever).
- mix (weights given): each source shuffled per its own epoch and repeated forever, then interleaved by
  `MapDataset.mix` in proportion to the weights; the stream is cut at `num_samples` (default
  epochs * total records; None epochs = forever).
Per-host sharding takes every `shard_count`-th record from `shard_index` (after mixing and shuffling, so
all hosts see the same mixture). `shard_from_jax()` gives (jax.process_index(), jax.process_count()).
"""

from __future__ import annotations

import functools

import grain

from lingshu_jax.data.config import DataConfig


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
            ds = ds.shuffle(seed=seed)
        return ds.repeat(cfg.epochs)
    parts = []
    for i, ds in enumerate(datasets):
        parts.append((ds.shuffle(seed=seed + 7919 * (i + 1)) if cfg.shuffle else ds).repeat())
    weights = [sc.weight if sc.weight is not None else 1.0 for sc in cfg.sources]
    mixed = grain.MapDataset.mix(parts, weights)
    total = cfg.num_samples or (cfg.epochs * sum(len(ds) for ds in datasets) if cfg.epochs else None)
    return mixed[:total] if total else mixed


def shard(ds: grain.MapDataset, shard_index: int, shard_count: int) -> grain.MapDataset:
    """Records shard_index, shard_index + shard_count, ... of `ds` (ValueError on bad arguments)."""
    if shard_count < 1 or not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index={shard_index} / shard_count={shard_count}: need 0 <= index < count")
    return ds[shard_index::shard_count] if shard_count > 1 else ds


def shard_from_jax() -> tuple[int, int]:
    """(process_index, process_count) of this JAX process: one data shard per host."""
    import jax

    return jax.process_index(), jax.process_count()
