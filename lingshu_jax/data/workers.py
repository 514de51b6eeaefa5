"""Liveness of the grain worker processes, and a wait on them that a dead worker or a signal ends.

grain's `mp_prefetch` reads each worker's elements from a multiprocessing queue in a prefetch thread, and
raises a bare "Worker process was terminated unexpectedly with exit code N" when its worker is gone. It
cannot when the worker died in the middle of writing an element larger than a pipe takes at once (SIGKILL
from the OOM killer while its feeder thread wrote a large group): grain's reader has taken the element's
length and waits, in a blocking `read`, for bytes that never come (the main process holds the pipe's
write end too, so no end-of-file comes either); whoever waits on that reader waits forever, and so does
grain's `close()`, which joins it. transport.py sends groups as small slab references that a pipe takes
in one atomic write, so this happens only to a group that did not fit a slab; and the wait is ours:

- `WorkerReport` (grain's `worker_init_fn`): each worker writes its pid to `<dir>/<index>.<pid>` and keeps
  an mmap'ed `<dir>/<index>.where` holding the file:line of the record it is transforming (`note`).
- `WorkerWatch` (main process): matches those pids to this process's children; the first that exited with
  a nonzero code or a signal is a `WorkerDied` naming the worker, its pid, the exit code or signal, the
  record it was reading and what to do. A worker that dies while it is being spawned (a script without
  `if __name__ == "__main__":` re-imported by it, an import error) leaves grain blocked for good in
  `Process.start()`, writing the pickled pipeline into a pipe nobody reads; the watch finds it among this
  process's unreaped children (/proc) and names the fix.
- `Fetcher`: the main process takes the next group in a daemon thread and waits for it in `POLL_S` steps,
  checking between them the stop request (SIGTERM/SIGINT: `guard.DataInterrupted`) and the watch, so
  neither a dead worker nor a slow one holds a signal back. A reader stuck on a dead worker's pipe stays
  stuck in threads nobody waits on; `close_within` bounds the close of such a pipeline.
"""

from __future__ import annotations

import glob
import mmap
import multiprocessing
import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
import weakref
from collections.abc import Callable

POLL_S = 0.25
_WHERE_BYTES = 1024

_STATUS: mmap.mmap | None = None  # this worker's `.where` map (set by WorkerReport in the worker)


class WorkerDied(RuntimeError):
    """A grain worker process exited (nonzero code or a signal) while the pipeline expected data from it."""


def note(raw) -> None:
    """In a worker: `raw` (a source record, its "where" file:line) is the record being read now (no-op in
    the main process)."""
    if _STATUS is not None:
        where = str(raw.get("where", "?")) if isinstance(raw, dict) else "?"
        data = where.encode("utf-8", "replace")[: _WHERE_BYTES - 1]
        _STATUS[: len(data) + 1] = data + b"\0"


class WorkerReport:
    """`worker_init_fn` for `mp_prefetch`; `directory` is created by `create()` in the main process."""

    def __init__(self, directory: str, worker_count: int):
        self.directory, self.worker_count = directory, worker_count

    @classmethod
    def create(cls, worker_count: int) -> "WorkerReport":
        return cls(tempfile.mkdtemp(prefix="lsj_workers_"), worker_count)

    def __call__(self, index: int, count: int) -> None:
        global _STATUS
        pid = os.getpid()
        os.makedirs(self.directory, exist_ok=True)  # (a closed iterator of the same dataset removed it)
        where = os.path.join(self.directory, f"{index}.where")
        with open(where, "wb") as f:
            f.write(b"\0" * _WHERE_BYTES)
        with open(where, "r+b") as f:
            _STATUS = mmap.mmap(f.fileno(), _WHERE_BYTES)
        tmp = os.path.join(self.directory, f".{index}.{pid}")
        open(tmp, "w").close()
        os.replace(tmp, os.path.join(self.directory, f"{index}.{pid}"))

    def started(self) -> dict[int, int]:
        """pid -> worker index of the workers that have started (ran this init)."""
        out = {}
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return out
        for name in names:
            index, _, pid = name.partition(".")
            if index.isdigit() and pid.isdigit():
                out[int(pid)] = int(index)
        return out

    def where(self, index: int) -> str:
        try:
            with open(os.path.join(self.directory, f"{index}.where"), "rb") as f:
                return f.read(_WHERE_BYTES).split(b"\0", 1)[0].decode("utf-8", "replace") or "?"
        except OSError:
            return "?"


def describe_exit(code: int) -> str:
    """'killed by SIGKILL (-9): out of memory? ...' / 'exited with code 1 ...'."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        why = (
            ": out of memory? (the kernel's OOM killer sends SIGKILL; `dmesg` says so)"
            if -code == signal.SIGKILL
            else ""
        )
        return f"killed by {name} ({code}){why}"
    return f"exited with code {code} (its traceback, if any, is in the log above)"


ADVICE = (
    "Lower data.worker_count or data.worker_buffer_size (each worker holds worker_buffer_size groups of "
    "data.group records, images decoded), or give the job more memory; then restart (the data resumes "
    "from the last checkpoint)."
)


class WorkerWatch:
    """Main process: the live state of the workers of one `WorkerReport`. `poll()` (call it often: it only
    lists this process's children) keeps each started worker's `multiprocessing.Process` and records the
    message of the first one that exited with a nonzero code or a signal; `check()` raises it as a
    `WorkerDied`. `sources`: the source names, for the message."""

    def __init__(self, report: WorkerReport, sources: list[str]):
        self.report, self.sources = report, sources
        self.error: str | None = None
        self._earlier = set(report.started())  # pids of workers of an earlier iterator of the same dataset
        self._procs: dict[int, tuple[int, multiprocessing.process.BaseProcess]] = {}  # pid -> (index, proc)
        self._older_children = set(child_pids())  # (children from before this pipeline: not its workers)

    def close(self) -> None:
        shutil.rmtree(self.report.directory, ignore_errors=True)

    def check(self) -> None:
        self.poll()
        if self.error is not None:
            raise WorkerDied(self.error)

    def poll(self) -> None:
        if self.error is not None:
            return
        if len(self._procs) < self.report.worker_count:  # (a dead child is listed no more: find them alive)
            started = {p: i for p, i in self.report.started().items() if p not in self._earlier}
            for proc in multiprocessing.active_children():
                if proc.pid in started:
                    self._procs.setdefault(proc.pid, (started[proc.pid], proc))
            self._find_unstarted_dead(started)
            if self.error is not None:
                return
        for pid, (index, proc) in self._procs.items():
            code = proc.exitcode
            if code:  # (None: alive; 0: a clean exit after close)
                self.error = (
                    f"data worker {index} of {self.report.worker_count} (pid {pid}) {describe_exit(code)}, "
                    f"while the pipeline still expected data from it; it was reading "
                    f"{self.report.where(index)} (sources {', '.join(self.sources)}; worker {index} reads "
                    f"groups {index}, {index} + {self.report.worker_count}, ... of data.group records). "
                    + ADVICE
                )
                return

    def _find_unstarted_dead(self, started: dict[int, int]) -> None:
        """A worker that died while it was being spawned (before its `WorkerReport`) is no multiprocessing
        child yet: `Process.start()` is still writing the pickled pipeline into the worker's pipe, and when
        that is more than a pipe holds, the write blocks forever (the spawning process holds the pipe's
        read end too). Such a worker is an exited child of this process, running this program, that no
        one has reaped: its exit status is read here without reaping it."""
        for pid in child_pids():
            if pid in self._older_children or pid in started or pid in self._procs:
                continue
            code = exit_status(pid)
            if code and same_program(pid):
                self.error = (
                    f"a data worker process (pid {pid}) ended before it started reading: {describe_exit(code)}. "
                    + NOT_STARTED_ADVICE
                )
                return

    def failure(self, exc: BaseException) -> WorkerDied:
        """The error for grain's own "Worker process was terminated unexpectedly" `exc`: the dead worker's
        message, or grain's with what is known."""
        self.poll()
        if self.error is not None:
            return WorkerDied(self.error)
        started = sorted(i for p, i in self.report.started().items() if p not in self._earlier)
        if started:
            return WorkerDied(
                f"a data worker process ended while the pipeline expected data ({exc}). " + ADVICE
            )
        return WorkerDied(
            f"a data worker process ended before it started reading ({exc}); no worker of "
            f"{self.report.worker_count} started. " + NOT_STARTED_ADVICE
        )


NOT_STARTED_ADVICE = (
    "Under the spawn start method every worker re-imports the main script: keep the code that builds and "
    "iterates the pipeline under `if __name__ == '__main__':`; otherwise the worker's own error is in the "
    "log above."
)


def child_pids() -> list[int]:
    """This process's child processes, live or exited and not yet reaped (Linux /proc; [] elsewhere)."""
    pids = set()
    for path in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
        try:
            with open(path) as f:
                pids.update(int(p) for p in f.read().split())
        except (OSError, ValueError):
            continue
    return sorted(pids)


def exit_status(pid: int) -> int | None:
    """A child's exit code (negative: the signal) if it has exited, without reaping it; None while it runs
    (or when it is no child of ours, or was reaped already)."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except (ChildProcessError, OSError):
        return None
    if info is None or info.si_pid == 0:
        return None
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


def same_program(pid: int) -> bool:
    """The process runs (ran) this process's executable: its /proc comm is ours (a spawned worker's is)."""
    try:
        with open(f"/proc/{pid}/comm") as theirs, open(f"/proc/{os.getpid()}/comm") as ours:
            return theirs.read() == ours.read()
    except OSError:
        return False


class Fetcher:
    """`next(iterator)` in a daemon thread, one call at a time, so that the caller waits with a timeout.

    `next(check)` asks for the iterator's next element (unless an earlier request is still out) and waits
    for it, calling `check()` every `POLL_S` seconds; an exception from `check` (a stop request, a dead
    worker) leaves the request out, and the next call waits for its answer. While `pending` the
    iterator belongs to the thread: nothing else may call it. Between requests the thread holds no
    reference to the iterator (an unclosed pipeline can still be collected, and grain then closes it)."""

    def __init__(self, iterator):
        self._iterator = iterator
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._answers: queue.SimpleQueue = queue.SimpleQueue()
        self.pending = False
        args = (self._requests, self._answers)
        threading.Thread(target=_fetch, args=args, daemon=True, name="lsj-data-fetch").start()
        weakref.finalize(self, self._requests.put, None)  # (collected without close: the thread ends)

    def next(self, check: Callable[[], None]):
        if not self.pending:
            self._requests.put(self._iterator)
            self.pending = True
        while True:
            try:
                ok, value = self._answers.get(timeout=POLL_S)
            except queue.Empty:
                check()
                continue
            self.pending = False
            if ok:
                return value
            raise value

    def close(self) -> None:
        self._requests.put(None)  # (the thread ends after its current request, if any)


def _fetch(requests: queue.SimpleQueue, answers: queue.SimpleQueue) -> None:
    while (iterator := requests.get()) is not None:
        try:
            answers.put((True, next(iterator)))
        except BaseException as e:  # StopIteration included: the caller re-raises it
            answers.put((False, e))
        del iterator


def close_within(close: Callable[[], None], seconds: float) -> bool:
    """Runs `close()` in a daemon thread and waits at most `seconds`; False when it did not return (it
    goes on in the background: grain's close waits on a reader stuck on a dead worker's pipe)."""
    if sys.is_finalizing():  # (no thread starts then)
        return False
    thread = threading.Thread(target=close, daemon=True, name="lsj-data-close")
    thread.start()
    thread.join(seconds)
    return not thread.is_alive()
