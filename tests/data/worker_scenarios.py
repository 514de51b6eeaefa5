"""Endings of a pipeline with grain worker processes, run in a process of their own (test_workers.py) so
that a hang, even one in a blocking C read or at interpreter exit, fails the test by its timeout instead of
stalling the suite: `python -m tests.data.worker_scenarios <kill|kill_queue|stop> <ops.pkl> <data.jsonl>`. The last
stdout line is a JSON report with the seconds each phase took.

- kill: SIGKILL one worker (the OOM killer's way) while the main process waits on the workers: the
  iteration must end with `WorkerDied`, which then ends the process uncaught (its exit must not hang).
- kill_queue: the same with no shared-memory slabs (`data.worker_slab_mb=0`): groups cross grain's queue
  whole, so the kill catches a worker in the middle of writing one into its pipe.
- stop: SIGSTOP both workers (alive, but delivering nothing: a slow worker) and send this process SIGTERM:
  the wait must end with `DataInterrupted`, the state must be the one from before the step; then the
  workers go on (SIGCONT) and the pipeline closes.
"""

import json
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time

from lingshu_jax.data import make_pipeline
from lingshu_jax.data.guard import DataInterrupted
from lingshu_jax.data.workers import WorkerDied
from tests.data.helpers import data_config


def _grain_workers():
    return [p for p in multiprocessing.active_children() if p.name.startswith("grain-process-prefetch")]


def _pipeline(ops, path, worker_slab_mb=1024):
    # Groups of 8 ~900-token samples pickle to ~150 KB, more than a pipe holds: with worker_slab_mb=0 they
    # cross grain's queue whole, and while nothing is taken each worker's queue feeder is blocked in the
    # middle of writing one (a kill then leaves half a group in the pipe).
    cfg = data_config(
        path, seq_len=1024, batch_size=1, packing=False, group=8, shuffle=False, epochs=None,
        worker_count=2, worker_buffer_size=1, prefetch=2, worker_slab_mb=worker_slab_mb,
    )  # fmt: skip
    return make_pipeline(cfg, ops=ops)


def kill(it) -> dict:
    it.next_batches(1)
    time.sleep(
        1.0
    )  # the workers fill their queues (and, before groups travelled in slabs, blocked mid-write)
    victim = _grain_workers()[0]
    os.kill(victim.pid, signal.SIGKILL)
    killed = time.monotonic()
    try:
        for _ in range(1000):  # what was delivered whole comes first, then the error
            it.next_batches(1)
        error = None
    except WorkerDied as e:
        error = e
    return {"answer_s": time.monotonic() - killed, "error": str(error), "pid": victim.pid, "raise": error}


def stop(it) -> dict:
    it.next_batches(1)
    time.sleep(1.0)
    stopped = _grain_workers()
    for p in stopped:
        os.kill(p.pid, signal.SIGSTOP)
    time.sleep(0.5)  # what was buffered is taken, then the pipeline waits on the stopped workers
    before = it.get_state()
    signalled = []
    signal.signal(signal.SIGTERM, lambda s, f: signalled.append(time.monotonic()))
    it.stop_when(lambda: bool(signalled))
    sent = []
    threading.Timer(
        0.5, lambda: (sent.append(time.monotonic()), os.kill(os.getpid(), signal.SIGTERM))
    ).start()
    try:
        error = f"no interruption ({len(it.next_batches(100))} batches)"
    except DataInterrupted as e:
        error = f"{type(e).__name__}: {e}"
    answered = time.monotonic()
    for p in stopped:
        os.kill(p.pid, signal.SIGCONT)  # (slow, not stuck: they deliver while the trainer saves)
    return {
        "error": error,
        "answer_s": answered - sent[0] if signalled else None,
        "same_state": it.get_state() == before,
    }


def main(mode: str, ops_path: str, path: str) -> None:
    with open(ops_path, "rb") as f:
        ops = pickle.load(f)
    it = _pipeline(ops, path, worker_slab_mb=0 if mode == "kill_queue" else 1024)
    report = {"kill": kill, "kill_queue": kill, "stop": stop}[mode](it)
    error = report.pop("raise", None)
    t = time.monotonic()
    it.close()
    report["close_s"] = time.monotonic() - t
    report["printed_at"] = time.time()  # (the test measures the interpreter's exit from here)
    print(json.dumps(report), flush=True)
    if error is not None:  # uncaught, as in a training script: the exit runs with the pipeline still alive
        raise error


if __name__ == "__main__":
    main(*sys.argv[1:])
