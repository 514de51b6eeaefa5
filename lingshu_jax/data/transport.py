"""How samples cross from grain worker processes to the main process, cheaply and in order.

grain's `mp_prefetch` pays a fixed cost per element (queue round trip, a shared-memory segment per array)
plus a cost per byte. Groups cut the first: the transform runs on `group` consecutive records (a
`MapDataset.batch` of raw records, so groups are defined by record index and the sample order stays
independent of the worker count) and ships one element per group, all pixel rows concatenated into one
array (one shared-memory segment); `UngroupIterDataset` splits groups back into samples in the main
process, with exact resume state. uint8 pixel rows (`DataConfig.pixel_dtype`, the default) cut the bytes
to a quarter of float32.

With worker processes a group travels in a reusable shared-memory slab (`SlabPool` in the worker,
`SlabReader` in the main process): its pixel rows, then its other arrays and fields pickled. A fresh
segment per group would cost a tmpfs page fault and a zeroing (about 1 ms per MB-sized sample, the largest
single cost of the transport); a reused slab costs one memcpy. The main process views the rows in place
(no copy) and hands the slab back when the last view of the group is garbage-collected (a flag byte in the
slab's header). What crosses grain's queue is then a `SlabRef` of a few hundred bytes, which a pipe takes
in one atomic write: a worker killed at any moment (the OOM killer) leaves no partial element in its
queue, on which grain's reader would wait forever (workers.py). When every slab is busy or the pool is at
its size limit, the group travels whole through the queue (its pixels in grain's own fresh segment).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import mmap
import os
import pickle
import secrets
import sys
import threading
import weakref
from collections.abc import Callable, Sequence

import grain
import numpy as np

from lingshu_jax.data import workers
from lingshu_jax.data.errors import is_skip
from lingshu_jax.data.guard import DataInterrupted


@dataclasses.dataclass(frozen=True)
class GroupTransform:
    """list of raw records -> {"samples": [samples without pixels], "pixels": [sum P, D] array}, or
    {"pixels": SlabRef} (the samples pickled in the slab after the rows).

    `shared_memory`: put the group in this process's `SlabPool` (set when it runs in grain workers), of at
    most `slab_mb` MiB of slabs.
    """

    transform: Callable[[dict], dict]
    shared_memory: bool = False
    slab_mb: int = 1024

    def __call__(self, raws: Sequence[dict]) -> dict:
        samples, pixels = [], []
        for raw in raws:
            workers.note(raw)  # (in a worker: the record its liveness report names)
            sample = self.transform(raw)
            if not is_skip(sample):
                sample = dict(sample)
                pix = sample.pop("pixel_values")
                sample["pixel_rows"] = len(pix)
                if len(pix):  # (empty arrays may have another dtype: keep them out of the concatenation)
                    pixels.append(pix)
            samples.append(sample)
        if self.shared_memory:  # the whole group in a slab: what crosses the queue is a few hundred bytes
            payload = pickle.dumps(samples, protocol=pickle.HIGHEST_PROTOCOL)
            ref = worker_pool(self.slab_mb).put(pixels or [_NO_PIXELS], payload)
            if ref is not None:
                return {"pixels": ref}
        joined = np.concatenate(pixels) if pixels else _NO_PIXELS
        return {"samples": samples, "pixels": joined}


_NO_PIXELS = np.zeros((0, 1176), np.float32)  # a group without images


def split_group(group: dict, reader: SlabReader | None = None) -> list[dict]:
    """Inverse of GroupTransform: samples with `pixel_values` as views into the group's pixel array.

    `reader`: the main process's SlabReader (one per iterator: it maps each slab once), for groups in a
    slab."""
    pixels, samples = group["pixels"], group.get("samples")
    if isinstance(pixels, SlabRef):
        if reader is None:
            raise ValueError(f"group in shared-memory slab {pixels.name}: split_group needs the SlabReader")
        pixels, samples = reader.view(pixels), reader.payload(pixels)  # (the view holds the slab)
    out, start = [], 0
    for sample in samples:
        if not is_skip(sample):
            sample = dict(sample)
            n = sample.pop("pixel_rows")
            sample["pixel_values"] = pixels[start : start + n]
            start += n
        out.append(sample)
    return out


# ------------------------------------------------------------------------------ shared-memory slabs
_HEADER = 64  # bytes before the rows; byte 0 is 1 while the main process holds the slab's group
_MiB = 1 << 20


@dataclasses.dataclass(frozen=True)
class SlabRef:
    """A group's pixel rows [rows, dim] at offset _HEADER of the shared-memory segment `name`, followed by
    `payload_bytes` bytes (the group's pickled samples)."""

    name: str
    shape: tuple[int, int]
    dtype: str
    payload_bytes: int = 0

    @property
    def payload_at(self) -> int:
        return _HEADER + self.shape[0] * self.shape[1] * np.dtype(self.dtype).itemsize


@dataclasses.dataclass
class _Slab:
    name: str
    mm: mmap.mmap
    flag: np.ndarray  # [1] uint8 view of the header's busy byte

    @property
    def capacity(self) -> int:
        return len(self.mm) - _HEADER


class SlabPool:
    """Worker process: shared-memory slabs reused for group pixel rows (thread-safe).

    A new slab holds max(group bytes, `min_bytes`); at most `max_slabs` slabs and `max_bytes` in all (tmpfs
    pages are only allocated where written). `put` returns None when no slab can take the group.
    """

    def __init__(self, max_slabs: int = 32, max_bytes: int = 1 << 30, min_bytes: int = 16 * _MiB):
        self.max_slabs, self.max_bytes, self.min_bytes = max_slabs, max_bytes, min_bytes
        self._slabs: list[_Slab] = []
        self._lock = threading.Lock()
        self._names = (f"lsj_{os.getpid()}_{secrets.token_hex(3)}_{i}" for i in itertools.count())

    def put(self, arrays: Sequence[np.ndarray], payload: bytes = b"") -> SlabRef | None:
        """Copies the row arrays [P_i, D] (one dtype) one after another into a free slab, then `payload`."""
        rows = sum(len(a) for a in arrays)
        dim, dtype = arrays[0].shape[1], arrays[0].dtype
        slab = self._acquire(rows * dim * dtype.itemsize + len(payload))
        if slab is None:
            return None
        out = np.ndarray((rows, dim), dtype, buffer=slab.mm, offset=_HEADER)
        np.concatenate(arrays, out=out)
        ref = SlabRef(slab.name, (rows, dim), dtype.str, len(payload))
        slab.mm[ref.payload_at : ref.payload_at + len(payload)] = payload
        return ref

    def _acquire(self, nbytes: int) -> _Slab | None:
        with self._lock:
            free = [s for s in self._slabs if not s.flag[0] and s.capacity >= nbytes]
            slab = min(free, key=lambda s: s.capacity) if free else self._new(nbytes)
            if slab is not None:
                slab.flag[0] = 1
            return slab

    def _new(self, nbytes: int) -> _Slab | None:
        size = _HEADER + -(-max(nbytes, self.min_bytes) // _MiB) * _MiB
        total = sum(len(s.mm) for s in self._slabs)
        if len(self._slabs) >= self.max_slabs or total + size > self.max_bytes:
            return None
        name = next(self._names)
        try:
            mm = _shm_create(name, size)
        except (ImportError, OSError):  # no POSIX shared memory here, or /dev/shm full: grain's path instead
            return None
        slab = _Slab(name, mm, np.ndarray((1,), np.uint8, buffer=mm))
        self._slabs.append(slab)
        return slab


_POOL: SlabPool | None = None
_POOL_LOCK = threading.Lock()


def worker_pool(max_mb: int = 1024) -> SlabPool:
    """This process's SlabPool of at most `max_mb` MiB (created on first use, in the worker)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = SlabPool(max_bytes=max_mb * _MiB)
        return _POOL


class SlabReader:
    """Main process: maps each slab once (then unlinks its name: the mappings keep the memory) and views
    groups in place. A group's slab goes back to its worker when the last view of it is collected."""

    def __init__(self):
        self._maps: dict[str, tuple[mmap.mmap, np.ndarray]] = {}

    def view(self, ref: SlabRef) -> np.ndarray:
        if ref.name not in self._maps:
            mm = _shm_attach_and_unlink(ref.name)
            self._maps[ref.name] = (mm, np.ndarray((1,), np.uint8, buffer=mm))
        mm, flag = self._maps[ref.name]
        rows = np.ndarray(ref.shape, np.dtype(ref.dtype), buffer=mm, offset=_HEADER)
        rows.flags.writeable = False
        weakref.finalize(rows, _release, flag)
        return rows

    def payload(self, ref: SlabRef) -> list[dict]:
        """The samples pickled after the rows of `ref` (call while a view of it is held)."""
        mm, _ = self._maps[ref.name]
        with memoryview(mm) as data:
            return pickle.loads(data[ref.payload_at : ref.payload_at + ref.payload_bytes])


def _release(flag: np.ndarray) -> None:
    flag[0] = 0


def _shm_create(name: str, size: int) -> mmap.mmap:
    """A new POSIX shared-memory segment, registered with multiprocessing's resource tracker (which
    unlinks it at exit if no main process ever attached it)."""
    import _posixshmem
    from multiprocessing import resource_tracker

    fd = _posixshmem.shm_open("/" + name, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
    try:
        os.ftruncate(fd, size)
        mm = mmap.mmap(fd, size)
    except OSError:
        _posixshmem.shm_unlink("/" + name)
        raise
    finally:
        os.close(fd)
    resource_tracker.register("/" + name, "shared_memory")
    return mm


def _shm_attach_and_unlink(name: str) -> mmap.mmap:
    import _posixshmem
    from multiprocessing import resource_tracker

    fd = _posixshmem.shm_open("/" + name, os.O_RDWR, mode=0o600)
    try:
        mm = mmap.mmap(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)
    _posixshmem.shm_unlink("/" + name)
    resource_tracker.unregister("/" + name, "shared_memory")
    return mm


END_OF_DATA = {"end_of_data": True}  # a group that says the data ended (EndMarkedMapDataset)


class EndMarkedMapDataset(grain.MapDataset):
    """`parent` (finite) followed by `markers` END_OF_DATA groups, so that grain's worker processes never
    run out of data before the main process has taken the last real group.

    A grain worker whose shard ends makes the main process stop and join it on the spot (grain's
    `ProcessPrefetchDatasetIterator`: the worker polls its stop flag every 0.5 s, then the interpreter
    exits), one worker after another: about a second in which no batch arrives and no CPU works, at the
    end of every finite pipeline. With markers the main process ends at the first one
    (`UngroupIterator`), while the workers wait on their full queues until `close()`. `markers` must cover
    what the workers read ahead: worker_count * (their queue + read-ahead + threads)."""

    def __init__(self, parent: grain.MapDataset, markers: int):
        super().__init__(parent)
        self._length, self._markers = len(parent), markers

    def __len__(self) -> int:
        return self._length + self._markers

    def __str__(self) -> str:
        return f"EndMarkedMapDataset(markers={self._markers})"

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        return self._parent[index] if index < self._length else END_OF_DATA


def end_marked(groups: grain.MapDataset, markers: int) -> grain.MapDataset:
    """`groups` followed by `markers` end-of-data groups (unchanged when `groups` repeats forever: grain's
    length sys.maxsize, no room for markers)."""
    return groups if len(groups) > sys.maxsize - markers else EndMarkedMapDataset(groups, markers)


class UngroupIterDataset(grain.IterDataset):
    """Groups -> samples, in order (main process); the data ends at the end of the parent or at its first
    END_OF_DATA group. `report`: the parent's grain workers' `WorkerReport` (then the wait for a group ends
    on their death, a `WorkerDied` naming the worker, and on `stop`, a `DataInterrupted`: workers.py);
    `sources`: the source names for that message."""

    def __init__(
        self,
        parent,
        report: workers.WorkerReport | None = None,
        sources: Sequence[str] = (),
        stop: Callable[[], bool] | None = None,
    ):
        super().__init__(parent)
        self._report, self._sources, self._stop = report, list(sources), stop

    def __iter__(self) -> "UngroupIterator":
        watch = workers.WorkerWatch(self._report, self._sources) if self._report else None
        return UngroupIterator(self._parent.__iter__(), watch, self._stop)


class UngroupIterator(grain.DatasetIterator):
    """State: {"parent": state before the current group, "next": samples of it already returned}."""

    CLOSE_S = 10.0  # the most close() waits for grain's close after a dead worker or an interrupted wait

    def __init__(
        self,
        parent: grain.DatasetIterator,
        watch: workers.WorkerWatch | None = None,
        stop: Callable[[], bool] | None = None,
    ):
        super().__init__(parent)
        self._watch, self._stop = watch, stop
        self._fetcher = workers.Fetcher(parent) if watch is not None else None
        self._closing = False
        self._reader = SlabReader()
        self._samples: list[dict] = []
        self._next = 0
        self._group_state = parent.get_state()
        self._ended = False

    def __next__(self) -> dict:
        while self._next >= len(self._samples):
            if self._ended:
                raise StopIteration
            if self._fetcher is None or not self._fetcher.pending:  # (else: the state from before it)
                self._group_state = self._parent.get_state()
            group = self._next_group()
            if group is END_OF_DATA or group.get("end_of_data"):
                self._ended = True
                raise StopIteration
            self._samples, self._next = split_group(group, self._reader), 0
        self._next += 1
        return self._samples[self._next - 1]

    def _next_group(self) -> dict:
        if self._fetcher is None:  # (no workers: the work happens in this thread, which checks the stop)
            return next(self._parent)
        self._watch.check()  # (never read again from a pipeline with a dead worker)
        try:
            return self._fetcher.next(self._check)
        except RuntimeError as e:  # grain's own error for a dead worker
            if isinstance(e, workers.WorkerDied) or "terminated unexpectedly" not in str(e):
                raise
            raise self._watch.failure(e) from e

    def _check(self) -> None:
        """Between waits for a group: a stop request or a dead worker ends the wait."""
        if self._stop is not None and self._stop():
            raise DataInterrupted("stop requested while waiting for data from the data workers")
        self._watch.check()

    def close(self) -> None:
        if self._fetcher is None:
            return super().close()
        if self._closing or sys.is_finalizing():  # (grain's __del__ at interpreter exit: no threads start)
            return
        self._closing = True
        self._fetcher.close()
        self._watch.close()
        if self._watch.error is None and not self._fetcher.pending:
            return super().close()
        # A request is still out (a stop request or a dead worker ended the wait): grain's close waits for
        # it, forever when it waits on a dead worker's pipe; wait a bounded time.
        workers.close_within(super().close, self.CLOSE_S)

    def get_state(self) -> dict:
        if self._next >= len(self._samples):
            return {"parent": self._parent.get_state(), "next": 0}
        return {"parent": self._group_state, "next": self._next}

    def set_state(self, state: dict) -> None:
        if self._fetcher is not None and self._fetcher.pending:  # (its group is not wanted now)
            with contextlib.suppress(StopIteration):
                self._fetcher.next(self._watch.check)
        self._parent.set_state(state["parent"])
        self._samples, self._next, self._ended = [], 0, False
        self._group_state = state["parent"]
        if state["next"]:
            self._samples, self._next = split_group(self._next_group(), self._reader), state["next"]
