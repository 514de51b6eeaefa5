"""Liveness of the grain worker processes: a worker that dies ends the run with one clear error, never a hang.

grain's `mp_prefetch` polls each worker's queue once a second and raises a bare "Worker process was terminated
unexpectedly with exit code N" when the worker is gone. It cannot when the worker died in the middle of
writing an element into its queue's pipe (SIGKILL from the OOM killer while its feeder thread wrote a
large group): the main process has read the element's length and waits, in a blocking `read`, for bytes
that never come (the main process holds the pipe's write end too, so no end-of-file comes either).

- `WorkerReport` (grain's `worker_init_fn`): each worker writes its pid to `<dir>/<index>.<pid>` and keeps
  an mmap'ed `<dir>/<index>.where` holding the file:line of the record it is transforming (`note`).
- `WorkerWatch` (main process): a daemon thread that every `POLL_S` seconds matches those pids to the live
  child processes, and when one has exited with a nonzero code or a signal, records the message (worker
  index and pid, exit code or signal, the record it was reading, what to do) and fills the dead worker's
  queue pipe with zero bytes, so that a read stuck on a partial element returns (grain then fails to
  unpickle it and raises, and the caller raises `WorkerDied` instead).
"""

from __future__ import annotations

import fcntl
import gc
import mmap
import multiprocessing
import multiprocessing.queues
import os
import shutil
import signal
import tempfile
import threading

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
    """Main process: watches the workers of one `WorkerReport`; `check()` raises `WorkerDied` once one has
    died. `sources`: the source names, for the message."""

    def __init__(self, report: WorkerReport, sources: list[str]):
        self.report, self.sources = report, sources
        self.error: str | None = None
        self._procs: dict[int, multiprocessing.process.BaseProcess] = {}
        self._stop = threading.Event()  # close(): the watch ends
        self._filled = threading.Event()  # the error was raised: stop filling the dead worker's pipe
        self._dead = None  # the dead worker's process
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True, name="lsj-worker-watch")
            self._thread.start()

    def close(self) -> None:
        """Ends the watch. After a worker died, also ends the others and empties their queue pipes: their
        data is of no use, and grain's close would wait (up to 25 s) on a worker's partial element."""
        self._stop.set()
        self._wait_for_fill()
        if self.error is not None:
            self._register(self.report.started())
            for proc in self._procs.values():
                if proc.exitcode is None:
                    proc.kill()
                    proc.join(timeout=5.0)
                _drain_queue_pipe(proc)
        shutil.rmtree(self.report.directory, ignore_errors=True)

    def check(self) -> None:
        if self.error is not None:
            raise self._died()

    def _died(self) -> WorkerDied:
        """The error, once no read waits on the dead worker's queue: after the fill (which ends when the
        pipe is full, i.e. no reader takes more), what is left in the pipe is read out, so that grain's
        close (which drains it) does not wait either."""
        self._wait_for_fill()
        _drain_queue_pipe(self._dead)
        return WorkerDied(self.error)

    def _wait_for_fill(self, timeout: float = 10.0) -> None:
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout)
        self._filled.set()

    def failure(self, exc: BaseException) -> WorkerDied:
        """The error to raise for `exc` from grain's prefetch: the dead worker's message (waiting up to a
        poll or two for the watch to see it), or one for a worker that died before it started."""
        self._stop.wait(3 * POLL_S)
        if self.error is None:
            self._poll()
        if self.error is not None:
            return self._died()
        started = sorted(self.report.started().values())
        return WorkerDied(
            f"a data worker process ended before it started reading ({exc}); workers that started: "
            f"{started or 'none'} of {self.report.worker_count}. Under the spawn start method every worker "
            "re-imports the main script: keep the code that builds and iterates the pipeline under "
            "`if __name__ == '__main__':`; otherwise the worker's own error is in the log above."
        )

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            self._poll()
            if self.error is not None:
                return

    def _register(self, started: dict[int, int]) -> None:
        for proc in multiprocessing.active_children():
            if proc.pid in started:
                self._procs.setdefault(proc.pid, proc)

    def _poll(self) -> None:
        started = self.report.started()
        self._register(started)
        for pid, proc in self._procs.items():
            code = proc.exitcode
            if code:  # (None: alive; 0: a clean exit after close)
                index = started.get(pid, "?")
                where = self.report.where(index) if index != "?" else "?"
                self.error = (
                    f"data worker {index} of {self.report.worker_count} (pid {pid}) {describe_exit(code)}, "
                    f"while the pipeline still expected data from it; it was reading {where} (sources "
                    f"{', '.join(self.sources)}; worker {index} reads groups {index}, {index} + "
                    f"{self.report.worker_count}, ... of data.group records). " + ADVICE
                )
                self._dead = proc
                _fill_queue_pipe(proc, self._filled)
                return


def _element_queue(proc):
    """The multiprocessing queue that grain worker `proc` puts its elements in: the `_buffer` of the grain
    iterator whose `_prefetch_process` it is (grain 0.2.18's ProcessPrefetchDatasetIterator; None when
    grain changes that, and then only the fill and drain are lost, not the error)."""
    for ref in gc.get_referrers(proc):
        attrs = ref if isinstance(ref, dict) else getattr(ref, "__dict__", {})
        if attrs.get("_prefetch_process") is proc:
            queue = attrs.get("_buffer")
            if isinstance(queue, multiprocessing.queues.Queue):
                return queue
    return None


def _queue_fd(proc, end: str) -> int | None:
    """Nonblocking fd of `end` ("_writer" / "_reader": the main process holds both) of `proc`'s element
    queue; None when it is not found."""
    conn = getattr(_element_queue(proc), end, None)
    if conn is None:
        return None
    try:
        fd = conn.fileno()
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    except (OSError, ValueError):
        return None
    return fd


def _drain_queue_pipe(proc) -> None:
    """Reads whatever is left in the dead worker's queue pipe (a partial element, filler zeros)."""
    fd = _queue_fd(proc, "_reader") if proc is not None else None
    while fd is not None:
        try:
            if not os.read(fd, 1 << 16):
                return
        except OSError:
            return


def _fill_queue_pipe(proc, stop: threading.Event) -> None:
    """Zero bytes into the dead worker's element queue, so that a read waiting on a partial element
    returns (grain then fails to unpickle it); nonblocking, until the pipe is full (nobody reads more) or
    `stop`."""
    fd = _queue_fd(proc, "_writer")
    if fd is None:
        return
    zeros = bytes(1 << 16)
    while not stop.is_set():
        try:
            os.write(fd, zeros)
        except OSError:  # EAGAIN: the pipe is full, no read waits on it (any other error: give up)
            return
