"""Timing utilities: statistics, interleaved rounds, memory probes and framework worker processes.

Each (task, framework) pair runs in its own spawned process (`Worker`), so the peak RSS a worker reports
belongs to that framework alone, and neither framework's import or threads disturb the other. The parent
only orchestrates: it asks the workers for one repetition at a time, alternating the order every round
(ABBA: ours-theirs, theirs-ours, ...), so slow drift of a shared machine's load affects both sides alike.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import multiprocessing
import os
import statistics
import threading
import time
import traceback
from typing import Any, Callable, Sequence

# ------------------------------------------------------------------------------------------ statistics


def median(xs: Sequence[float]) -> float:
    """Median of a non-empty sequence (mean of the middle two for an even count)."""
    if not xs:
        raise ValueError("median of an empty sequence")
    return float(statistics.median(xs))


def summarize(xs: Sequence[float | None]) -> dict[str, Any]:
    """Raw values plus median / min / max / relative spread ((max - min) / median) of the valid ones
    (None and NaN are invalid: e.g. a decode round whose difference of two timings was not positive)."""
    values = [None if x is None else float(x) for x in xs]
    valid = [x for x in values if x is not None and not math.isnan(x)]
    out: dict[str, Any] = {"values": values, "n": len(valid), "invalid": len(values) - len(valid)}
    if not valid:
        return dict(out, median=None, min=None, max=None, spread=None)
    med = median(valid)
    return dict(
        out,
        median=med,
        min=min(valid),
        max=max(valid),
        spread=(max(valid) - min(valid)) / med if med else math.nan,
    )


def speedup(ours: float | None, theirs: float | None, higher_is_better: bool) -> float | None:
    """ours / transformers as a speed-up (> 1 = ours faster).

    For rates (tokens/s, samples/s) that is ours / theirs; for times (seconds) theirs / ours.
    None when either side is missing or not positive."""
    if ours is None or theirs is None or ours <= 0 or theirs <= 0:
        return None
    return ours / theirs if higher_is_better else theirs / ours


def abba_order(rounds: int, names: Sequence[str] = ("ours", "transformers")) -> list[tuple[str, ...]]:
    """Per-round order of the two sides, alternating: (a, b), (b, a), (a, b), ..."""
    a, b = names
    return [(a, b) if r % 2 == 0 else (b, a) for r in range(rounds)]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(wall seconds, result) of one call."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


# ------------------------------------------------------------------------------------------ memory


def self_peak_rss_mb() -> float | None:
    """This process's peak resident set (VmHWM / ru_maxrss) in MiB, or None where unavailable."""
    try:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        return kb / 1024.0
    except (ImportError, OSError):
        return None


class RssSampler:
    """Samples the RSS of this process plus all its descendants (e.g. grain workers) with psutil in a
    background thread; `peak_mb` is the largest sum seen. Use as a context manager or start()/stop()."""

    def __init__(self, interval_s: float = 0.05):
        self.interval_s = interval_s
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> float:
        import psutil

        proc = psutil.Process()
        total = proc.memory_info().rss
        for child in proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        mb = total / 2**20
        self.peak_mb = max(self.peak_mb, mb)
        return mb

    def _loop(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def start(self) -> "RssSampler":
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> float:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()
        return self.peak_mb

    __enter__ = start

    def __exit__(self, *exc):
        self.stop()


def jax_device_memory() -> dict[str, Any] | None:
    """Peak / in-use bytes of the first JAX device from `memory_stats()` (None on CPU, where it is empty)."""
    import jax

    stats = jax.devices()[0].memory_stats()
    if not stats:
        return None
    keys = ("peak_bytes_in_use", "bytes_in_use", "bytes_limit")
    return {k: int(stats[k]) for k in keys if k in stats}


def torch_device_memory() -> dict[str, Any] | None:
    """Peak / in-use bytes of the current CUDA device, or None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    return {
        "peak_bytes_in_use": int(torch.cuda.max_memory_allocated()),
        "bytes_in_use": int(torch.cuda.memory_allocated()),
    }


# ------------------------------------------------------------------------------------------ workers


class WorkerError(RuntimeError):
    """A worker raised; the message holds its traceback."""


def _load(target: str) -> Callable[..., Any]:
    """'package.module:Name' -> the object (imported here, after the worker's environment is set)."""
    import importlib

    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


_SPAWN_LOCK = threading.Lock()  # os.environ is process-wide: one spawn at a time changes it


@contextlib.contextmanager
def _environment(env: dict[str, str | None]):
    """os.environ with `env` applied (None values unset), restored on exit. A spawned process is exec'd with
    the environment of the moment, so variables read at process start (GLIBC_TUNABLES, LD_PRELOAD, XLA_FLAGS
    before JAX's first import) reach it."""
    saved = {key: os.environ.get(key) for key in env}
    try:
        _set_environ(env)
        yield
    finally:
        _set_environ(saved)


def _set_environ(env: dict[str, str | None]) -> None:
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _serve(conn, factory: str, args: tuple) -> None:
    """Worker process body (its environment set when it was spawned): import and build the session, then
    answer (method, kwargs) messages until 'close'."""
    sampler = RssSampler().start()
    try:
        session = _load(factory)(*args)
    except BaseException:  # noqa: BLE001 - reported to the parent
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ok", None))
    while True:
        method, kwargs = conn.recv()
        if method == "close":
            break
        try:
            if method == "memory":
                out = {"peak_rss_mb": sampler.stop(), "max_rss_self_mb": self_peak_rss_mb()}
                out.update(getattr(session, "device_memory", lambda: {})() or {})
                sampler = RssSampler().start()
            else:
                out = getattr(session, method)(**kwargs)
            conn.send(("ok", out))
        except BaseException:  # noqa: BLE001
            conn.send(("error", traceback.format_exc()))
    sampler.stop()
    conn.close()


@dataclasses.dataclass
class Worker:
    """A session object living in a fresh spawned process: `Worker.start(name, "module:Class", *args)`, then
    `call(method, **kwargs)` runs `session.method(**kwargs)` there and returns its (picklable) result.
    `call("memory")` returns the peak RSS (process + children) since the start or the previous call."""

    name: str
    process: Any
    conn: Any

    @classmethod
    def start(
        cls, name: str, factory: str, *args, env: dict[str, str | None] | None = None, wait: bool = True
    ) -> "Worker":
        """Spawns the process with this process's environment plus `env` (None values unset a variable, from
        the new process's first instruction on); `factory` names the session class ('module:Class'). With
        `wait=False` the session is still being built on return: call `ready()` before anything else (lets
        two workers load at once)."""
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(child, factory, args), name=f"bench-{name}", daemon=False)
        with _SPAWN_LOCK, _environment(dict(env or {})):
            proc.start()
        child.close()
        worker = cls(name, proc, parent)
        if wait:
            worker.ready()
        return worker

    def ready(self) -> "Worker":
        """Waits until the session is built (raises WorkerError if building it failed)."""
        self._receive()
        return self

    def _receive(self):
        try:
            status, value = self.conn.recv()
        except EOFError:
            self.process.join(5)
            raise WorkerError(f"worker {self.name} died (exit code {self.process.exitcode})") from None
        if status == "error":
            raise WorkerError(f"worker {self.name} failed:\n{value}")
        return value

    def call(self, method: str, **kwargs):
        self.conn.send((method, kwargs))
        return self._receive()

    def close(self, timeout: float = 30.0) -> None:
        try:
            if self.process.is_alive():
                self.conn.send(("close", {}))
        except (BrokenPipeError, OSError):
            pass
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


def interleaved(workers: dict[str, Worker], rounds: int, method: str = "run", **kwargs) -> dict[str, list]:
    """Calls `method` once per worker per round, in ABBA order; -> {worker name: [result per round]}."""
    names = tuple(workers)
    out: dict[str, list] = {n: [] for n in names}
    orders = abba_order(rounds, names) if len(names) == 2 else [names] * rounds
    for order in orders:
        for name in order:
            out[name].append(workers[name].call(method, **kwargs))
    return out


def close_all(workers: dict[str, Worker]) -> None:
    for w in workers.values():
        w.close()


class Deadline:
    """The suite's time budget: sections run their minimum rounds, extra rounds only while time is left."""

    def __init__(self, budget_s: float):
        self.start, self.budget_s = time.perf_counter(), float(budget_s)

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.start)


def interleaved_rounds(
    workers: dict[str, Worker], method: str, rounds: int, deadline: Deadline, reserve_s: float = 0.0, **kwargs
) -> dict[str, list]:
    """ABBA rounds of `method`; after 2 rounds, another starts only if it should end before the deadline
    minus `reserve_s` (time kept for the sections still to come)."""
    out: dict[str, list] = {name: [] for name in workers}
    for r in range(rounds):
        start = time.perf_counter()
        for name in abba_order(r + 1, tuple(workers))[r]:
            out[name].append(workers[name].call(method, **kwargs))
        took = time.perf_counter() - start
        if r + 1 >= 2 and deadline.left() - reserve_s < took:
            break
    return out
