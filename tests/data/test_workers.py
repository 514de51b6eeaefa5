"""Endings of a pipeline with grain worker processes: a worker killed mid-run (SIGKILL, as from the OOM
killer) ends the iteration within seconds with one error naming the worker, its pid, the signal, the
record it was reading and what to do; SIGTERM during a wait on workers that deliver nothing ends the wait
within the wait's 0.25 s poll, with the state from before the step; a script without a main guard, whose
spawned worker dies before it starts, ends with an error naming the fix instead of hanging. Each scenario runs in a process of its own
(worker_scenarios.py) that the test kills at its time limit, so no hang, not even one in a blocking read
or at interpreter exit, can pass or stall the suite."""

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time

import pytest

from lingshu_jax.data.guard import DataInterrupted
from lingshu_jax.data.workers import POLL_S, Fetcher, describe_exit

from .helpers import text_only, write_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIMIT_S = 90  # the whole scenario process (about 10 s on 2 busy cores); a hang is forever
ANSWER_S = 10  # from the kill or the signal to the error


def _run_bounded(cmd: list[str], what: str) -> tuple[int, str, str]:
    """Runs `cmd` in a session of its own; past LIMIT_S it and its grain workers are killed and the test
    fails. Returns (returncode, stdout, stderr)."""
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # (its grain workers too)
        out, err = proc.communicate()
        raise AssertionError(f"{what} did not end within {LIMIT_S} s:\n{out}\n{err[-4000:]}") from None
    return proc.returncode, out, err


def _run_scenario(mode, tmp_path, ops) -> dict:
    records = [text_only(q=f"{i} " + "lesion " * 300, a="ok") for i in range(64)]
    path = write_jsonl(str(tmp_path / "long.jsonl"), records)
    ops_path = tmp_path / "ops.pkl"
    ops_path.write_bytes(pickle.dumps(ops))
    cmd = [sys.executable, "-m", "tests.data.worker_scenarios", mode, str(ops_path), path]
    returncode, out, err = _run_bounded(cmd, f"the {mode} scenario")
    assert returncode == (1 if mode.startswith("kill") else 0), err[-4000:]  # (kill: ends by the WorkerDied)
    report = json.loads(out.strip().splitlines()[-1])
    report["exit_s"] = time.time() - report.pop("printed_at")
    report["stderr_end"] = next((line for line in err.splitlines() if "WorkerDied: " in line), "")
    print(report)
    return report


@pytest.mark.parametrize("mode", ["kill", "kill_queue"])  # groups in slabs / whole through grain's queue
def test_a_worker_killed_mid_run_is_an_error_naming_worker_signal_and_record_within_seconds(
    tmp_path, ops, mode
):
    report = _run_scenario(mode, tmp_path, ops)
    msg = report["error"]
    assert report["stderr_end"].startswith(f"lingshu_jax.data.workers.WorkerDied: {msg}")
    assert f"(pid {report['pid']}) killed by SIGKILL (-9): out of memory?" in msg
    assert f"it was reading {tmp_path / 'long.jsonl'}:" in msg and "sources mixed" in msg
    assert "Lower data.worker_count or data.worker_buffer_size" in msg
    assert report["answer_s"] < ANSWER_S and report["close_s"] < ANSWER_S + 5


def test_sigterm_while_waiting_on_workers_that_deliver_nothing_interrupts_at_once(tmp_path, ops):
    report = _run_scenario("stop", tmp_path, ops)
    assert report["error"].startswith("DataInterrupted: stop requested while waiting for data")
    assert report["answer_s"] < 2.0  # the wait checks the stop request every 0.25 s (a busy machine: margin)
    assert report["same_state"]  # a checkpoint taken now resumes at the step's first batch
    assert report["close_s"] < ANSWER_S + 5


def test_a_script_without_a_main_guard_ends_with_an_error_naming_the_fix_not_a_hang(tmp_path, ops):
    """Its spawned worker dies while the main process is still writing the pickled pipeline into the
    worker's pipe: a write that never returns. The watch finds the dead child and ends the run."""
    path = write_jsonl(str(tmp_path / "d.jsonl"), [text_only(q=f"{i}", a="ok") for i in range(8)])
    ops_path = tmp_path / "ops.pkl"
    ops_path.write_bytes(pickle.dumps(ops))
    cmd = [sys.executable, os.path.join(ROOT, "tests", "data", "unguarded_script.py"), str(ops_path), path]
    start = time.monotonic()
    returncode, out, err = _run_bounded(cmd, "the unguarded script")
    print(f"ended after {time.monotonic() - start:.1f} s")
    assert returncode == 1 and "first batch" not in out, (out, err[-4000:])
    last = [line for line in err.splitlines() if "WorkerDied: " in line][-1]
    assert (
        "a data worker process (pid " in last
        and "ended before it started reading: exited with code 1" in last
    )
    assert "keep the code that builds and iterates the pipeline under `if __name__ == '__main__':`" in last
    assert "An attempt has been made to start a new process before the" in err  # the worker's own error


def test_a_wait_ended_by_its_check_leaves_the_request_out_and_the_next_call_gets_the_answer():
    release = threading.Event()

    class Slow:
        def __next__(self):
            release.wait(10)
            return "group"

    fetcher, checks = Fetcher(Slow()), []

    def check():  # the second look finds a stop request
        checks.append(time.monotonic())
        if len(checks) == 2:
            raise DataInterrupted("stop")

    with pytest.raises(DataInterrupted):
        fetcher.next(check)
    assert fetcher.pending and checks[1] - checks[0] < 8 * POLL_S  # (one POLL_S apart; a busy machine)
    release.set()
    assert fetcher.next(check) == "group" and not fetcher.pending
    fetcher.close()


def test_exit_descriptions_name_the_signal_or_the_code():
    assert describe_exit(-9).startswith("killed by SIGKILL (-9): out of memory?")
    assert describe_exit(-15) == "killed by SIGTERM (-15)"
    assert describe_exit(1).startswith("exited with code 1")
