"""A grain worker process that dies mid-run (SIGKILL, as from the OOM killer) ends the iteration within
seconds with one error naming the worker, its pid, the signal, the record it was reading and what to do;
never a hang. The test enforces its own time limit (SIGALRM), so a hang fails it."""

import multiprocessing
import os
import signal
import time

import pytest

from lingshu_jax.data import make_pipeline
from lingshu_jax.data.workers import WorkerDied, describe_exit

from .helpers import data_config, text_only, time_limit, write_jsonl

LIMIT_S = 30  # the whole test (about 10 s on 2 busy cores); a hang is forever
ANSWER_S = 10  # from the kill to the error (the watch polls every 0.25 s)


def _grain_workers():
    return [p for p in multiprocessing.active_children() if p.name.startswith("grain-process-prefetch")]


def test_a_worker_killed_mid_run_is_an_error_naming_worker_signal_and_record_within_seconds(tmp_path, ops):
    # Groups of 8 ~900-token samples pickle to ~150 KB, more than a pipe holds: while the main process
    # waits, each worker's queue feeder is blocked in the middle of writing one, so the SIGKILL leaves a
    # partial element in that worker's queue, which the main process would wait on forever (the hang).
    records = [text_only(q=f"{i} " + "lesion " * 300, a="ok") for i in range(64)]
    path = write_jsonl(str(tmp_path / "long.jsonl"), records)
    cfg = data_config(
        path, seq_len=1024, batch_size=1, packing=False, group=8, shuffle=False, epochs=None,
        worker_count=2, worker_buffer_size=1, prefetch=2,
    )  # fmt: skip
    it = make_pipeline(cfg, ops=ops)
    with time_limit(LIMIT_S):
        next(it)
        time.sleep(1.0)  # the workers fill their queues and block mid-write
        victim = _grain_workers()[0]
        os.kill(victim.pid, signal.SIGKILL)
        killed = time.monotonic()
        with pytest.raises(WorkerDied) as e:
            for _ in range(1000):  # what was delivered whole comes first, then the error
                next(it)
        answered = time.monotonic() - killed
    it.close()
    msg = str(e.value)
    print(f"{answered:.1f} s after the kill: {msg}")
    assert answered < ANSWER_S
    assert f"(pid {victim.pid}) killed by SIGKILL (-9): out of memory?" in msg
    assert f"it was reading {path}:" in msg and "sources mixed" in msg
    assert "Lower data.worker_count or data.worker_buffer_size" in msg


def test_exit_descriptions_name_the_signal_or_the_code():
    assert describe_exit(-9).startswith("killed by SIGKILL (-9): out of memory?")
    assert describe_exit(-15) == "killed by SIGTERM (-15)"
    assert describe_exit(1).startswith("exited with code 1")
