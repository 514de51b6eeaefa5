"""The input pipeline of one training stage: config -> checkpointable iterator of fixed-shape batches.

Graph (grain)::

  sources -> mixture (shuffle/mix/epochs) -> host shard -> batch(group)          MapDataset, lazy
    -> map(GroupTransform(SampleTransform)) + end markers -> to_iter_dataset -> mp_prefetch   (workers)
    -> Ungroup -> PackIterDataset (batches) -> [ThreadPrefetch] -> PipelineIterator   main process

Per-sample work (image decode, resize, patch flattening, tokenize, rope ids) is a MapDataset map, so grain
slices it across workers by record index and interleaves them back in order: the batches are identical for
any worker count. Pixel rows stay uint8 up to the model, which normalises them on the device
(`DataConfig.pixel_dtype`). Packing/batching is stateful, so it runs after `mp_prefetch` in the main process.

`PipelineIterator.get_state()/set_state()` resume exactly (JSON-serialisable); `counters` are the cumulative
stats (samples, skipped/<class>, truncated, tokens/real, tokens/total, ...) and are part of the state.
Orbax: `ocp.args.Composite(data=save_args(it), ...)` / `restore_args(it)`, or `save_state`/`restore_state`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import grain

from lingshu_jax.data import guard, mixture, packing, sources, transport, workers
from lingshu_jax.data.config import DataConfig
from lingshu_jax.data.errors import add_stats
from lingshu_jax.data.ops import Ops
from lingshu_jax.data.transforms import SampleTransform

_MIN_SHM_BYTES = 1 << 16


def make_pipeline(*args, **kwargs) -> "PipelineIterator":
    """A fresh iterator over this host's batches: `iter(make_dataset(...))`, same arguments. Call `.close()`
    when done."""
    return iter(make_dataset(*args, **kwargs))


def make_dataset(
    data_cfg: DataConfig | Mapping,
    tokenizer=None,
    processor=None,
    model_config=None,
    *,
    shard_index: int = 0,
    shard_count: int = 1,
    seed: int = 0,
    ops: Ops | None = None,
    index_cache_dir: str | None = None,
) -> "PipelineDataset":
    """grain IterDataset of batches for host `shard_index` of `shard_count`.

    `ops` overrides the processing functions (default: `Ops.from_processor(processor, model_config)`).
    """
    cfg = data_cfg if isinstance(data_cfg, DataConfig) else DataConfig.from_dict(data_cfg)
    if ops is None:
        if processor is None or model_config is None:
            raise ValueError("make_pipeline needs processor and model_config (or ops=)")
        ops = Ops.from_processor(processor, model_config, tokenizer, pixel_dtype=cfg.pixel_dtype)
    raw = [sources.open_source(sc, index_cache_dir, cfg.parquet_cache_mb) for sc in cfg.sources]
    transform = SampleTransform(
        ops=ops,
        policy=cfg.error_policy(),
        seq_len=cfg.seq_len,
        patch_budget=cfg.patch_budget,
        roots=[sc.image_root() for sc in cfg.sources],
        names=[sc.name for sc in cfg.sources],
        train_on=cfg.train_on,
        truncation=cfg.truncation,
        video_fps=cfg.video_fps,
        video_max_frames=cfg.video_max_frames,
    )
    ds = mixture.build_mixture(raw, cfg, seed, shard_index, shard_count)  # this host's share
    # Groups of consecutive records (by index: the order does not depend on the worker count).
    group_transform = transport.GroupTransform(
        transform, shared_memory=cfg.worker_count > 0 and cfg.worker_slab_mb > 0, slab_mb=cfg.worker_slab_mb
    )
    groups = ds.batch(cfg.group, batch_fn=list).map(group_transform)
    # End markers: the workers never run dry, so the end of the data costs no join of them (transport.py).
    ahead = cfg.worker_buffer_size + cfg.read_buffer + cfg.read_threads + 2
    groups = transport.end_marked(groups, max(1, cfg.worker_count) * ahead)
    it_ds = groups.to_iter_dataset(
        grain.ReadOptions(num_threads=cfg.read_threads, prefetch_buffer_size=cfg.read_buffer)
    )
    if cfg.worker_count > 0:
        _ensure_absl_flags_parsed()
        # Small arrays (token ids) travel pickled; pixels in a reused slab (transport.py) or, when none is
        # free, a fresh shared-memory segment.
        it_ds = grain.experimental.WithOptionsIterDataset(
            it_ds, grain.experimental.DatasetOptions(min_shm_size=_MIN_SHM_BYTES)
        )
        report = workers.WorkerReport.create(cfg.worker_count)  # a dead worker is an error naming it
        it_ds = it_ds.mp_prefetch(
            grain.MultiprocessingOptions(
                num_workers=cfg.worker_count,
                per_worker_buffer_size=cfg.worker_buffer_size,
            ),
            worker_init_fn=report,
        )
    else:
        report = None
    stop = guard.StopRequest()
    samples = transport.UngroupIterDataset(it_ds, report, transform.names, stop)
    per_host = [-(-len(r) // shard_count) for r in raw]  # records of each source this host sees per pass
    policy = f"data.on_error={cfg.on_error!r}"
    if cfg.on_error_overrides:
        policy += f" (on_error_overrides {dict(cfg.on_error_overrides)})"
    batches = packing.PackIterDataset(
        samples,
        pool=cfg.pack_pool,
        guard=guard.SourceGuard(transform.names, transform.roots, per_host, policy),
        stop=stop,
        pixel_normalization=ops.pixel_normalization,
        batch_size=cfg.batch_size,
        seq_len=cfg.seq_len,
        patch_budget=cfg.patch_budget,
        segments_per_row=cfg.segments_per_row,
        pad_id=ops.pad_id,
        image_token_id=ops.image_token_id,
        video_token_id=ops.video_token_id,
        merge_size=ops.merge_size,
        window_merge_units=ops.window_merge_units,
        vision_chunks=cfg.vision_chunks,
    )
    if cfg.prefetch > 0:
        batches = grain.experimental.ThreadPrefetchIterDataset(batches, prefetch_buffer_size=cfg.prefetch)
    keys = resume_keys(cfg, seed, shard_index, shard_count)
    return PipelineDataset(batches, fingerprint(cfg, seed, shard_index, shard_count), stop, keys)


def fingerprint(cfg: DataConfig, seed: int, shard_index: int, shard_count: int) -> str:
    """Hash of everything that decides the batch sequence and the state layout; a saved state only
    restores into a pipeline with the same fingerprint (grain's per-worker state needs the same
    worker_count too)."""
    keys = resume_keys(cfg, seed, shard_index, shard_count)
    return hashlib.sha1(repr(sorted(keys.items())).encode()).hexdigest()[:16]


def resume_keys(cfg: DataConfig, seed: int, shard_index: int, shard_count: int) -> dict[str, str]:
    """What must be equal to resume a saved iterator state, by name (the fingerprint hashes this; the
    state stores it, so a refused restore says what changed)."""
    keys = (
        "seq_len",
        "batch_size",
        "patch_budget",
        "packing",
        "max_segments_per_row",
        "pack_pool",
        "train_on",
        "truncation",
        "epochs",
        "num_samples",
        "shuffle",
        "worker_count",
        "group",
        "vision_chunks",
    )
    sources = [(s.name, s.kind, s.weight, s.paths, s.tfds_name, s.split) for s in cfg.sources]
    out = {"sources": repr(sources)}
    out.update({k: repr(getattr(cfg, k)) for k in keys})
    # Later options count only when set away from their defaults: states saved before they existed resume.
    for k in ("video_fps", "video_max_frames", "parquet_shuffle_window"):
        if getattr(cfg, k) != DataConfig.__dataclass_fields__[k].default:
            out[k] = repr(getattr(cfg, k))
    out.update(prefetch_thread=repr(cfg.prefetch > 0), seed=repr(seed))
    out["shard"] = repr((shard_index, shard_count))
    return out


def _ensure_absl_flags_parsed() -> None:
    """grain worker processes read absl flags; mark them parsed when not run under absl.app."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


class PipelineDataset(grain.IterDataset):
    """Top of the graph: strips each batch's `stats` into the iterator's counters."""

    def __init__(self, parent: grain.IterDataset, fingerprint: str = "", stop=None, resume_keys=None):
        super().__init__(parent)
        self._fingerprint = fingerprint
        self._stop = stop
        self._resume_keys = resume_keys or {}

    def __iter__(self) -> "PipelineIterator":
        it = PipelineIterator(self._parent.__iter__(), self._fingerprint, self._stop)
        it.resume_keys = dict(self._resume_keys)
        return it


class PipelineIterator(grain.DatasetIterator):
    """Iterator of batch dicts (numpy). `counters`: cumulative stats; `last_stats`: the last batch's.

    `stop_when(predicate)`: while it waits for data, the iterator raises `DataInterrupted` once the
    predicate is true (the trainer passes "a SIGTERM/SIGINT arrived"); `next_batches(n)` takes a step's n
    batches and, when interrupted, reports the state from before them, so a checkpoint taken then resumes
    at that step's first batch."""

    def __init__(self, parent: grain.DatasetIterator, fingerprint: str = "", stop=None):
        super().__init__(parent)
        self.fingerprint = fingerprint
        self.counters: dict[str, int] = {}
        self.last_stats: dict[str, int] = {}
        self._stop = stop
        self._state_before_interrupt = None
        self.resume_keys: dict[str, str] = {}

    def stop_when(self, predicate) -> None:
        if self._stop is None:
            raise ValueError("this pipeline was built without a stop request")
        self._stop.set(predicate)

    def __next__(self) -> dict:
        batch = dict(next(self._parent))
        self.last_stats = batch.pop("stats")
        add_stats(self.counters, self.last_stats)
        if batch.get("stats_only"):  # skip records after the last batch: counted, then the end
            raise StopIteration
        return batch

    def next_batches(self, n: int) -> list[dict] | None:
        """The next n batches; None when the data ends first; DataInterrupted on a stop request."""
        before = self.get_state()
        out = []
        try:
            for _ in range(n):
                out.append(next(self))
        except StopIteration:
            return None
        except guard.DataInterrupted:
            self._state_before_interrupt = before
            raise
        return out

    @property
    def packing_efficiency(self) -> float:
        """Real tokens / row tokens over all batches so far."""
        return packing.packing_efficiency(self.counters)

    def get_state(self) -> dict[str, Any]:
        if self._state_before_interrupt is not None:
            return self._state_before_interrupt
        return {
            "parent": self._parent.get_state(),
            "counters": dict(self.counters),
            "fingerprint": self.fingerprint,
            "resume_keys": dict(self.resume_keys),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        saved = state.get("fingerprint", self.fingerprint)
        if saved != self.fingerprint:
            old = state.get("resume_keys", {})
            new = self.resume_keys
            changed = [f"data.{k}: {old.get(k, '?')} -> {v}" for k, v in new.items() if old.get(k) != v]
            raise ValueError(
                f"data iterator state was saved by a different pipeline (fingerprint {saved} != "
                f"{self.fingerprint}); changed: {'; '.join(changed) or 'unknown (an older state)'}. The same "
                "sources, batch/packing options, worker_count, seed and shard are needed to resume: set them "
                "back, or start the data from the beginning in a new workdir"
            )
        self._parent.set_state(state["parent"])
        self._state_before_interrupt = None
        self.counters = {k: v for k, v in state.get("counters", {}).items()}
        self.last_stats = {}


# ------------------------------------------------------------------------------ Orbax
def save_args(iterator: grain.DatasetIterator):
    """Orbax save argument for the iterator state: `ocp.args.Composite(data=save_args(it), ...)`."""
    return grain.checkpoint.CheckpointSave(iterator)


def restore_args(iterator: grain.DatasetIterator):
    """Orbax restore argument: restores *into* `iterator` (a fresh pipeline built with the same config)."""
    return grain.checkpoint.CheckpointRestore(iterator)


def save_state(manager, step: int, iterator: grain.DatasetIterator, **items) -> bool:
    """`manager.save(step, Composite(data=<iterator state>, **items))` for an `ocp.CheckpointManager`."""
    import orbax.checkpoint as ocp

    return manager.save(step, args=ocp.args.Composite(data=save_args(iterator), **items))


def restore_state(manager, step: int, iterator: grain.DatasetIterator, **items):
    """Restores the iterator state saved by `save_state` into `iterator`; returns the Composite result."""
    import orbax.checkpoint as ocp

    return manager.restore(step, args=ocp.args.Composite(data=restore_args(iterator), **items))
