"""GRPO over two jax.distributed processes on 127.0.0.1 (2 CPU devices each) logs what one process with 4
devices logs: the same rewards (each sample drawn with its own key, whichever host draws it), the same loss,
KL and gradient norm (mini-batches are the same global rows), step after step (the updates agree). The same
two processes then resume from the step-1 checkpoint and run step 2 again, as the uninterrupted run did."""

import os

import jax
import numpy as np
import portpicker

from lingshu_jax.convert.load import load_any
from lingshu_jax.train.metrics import read_metrics
from tests.processes import result, spawn
from tests.rl.multihost_worker import STEPS, write_data


def _spawn(port, pid, nproc, devices, data, workdir, *resumed):
    return spawn("tests.rl.multihost_worker", [port, pid, nproc, devices, data, workdir, *resumed])


def _result(proc):
    return result(proc, timeout=600)


def test_two_hosts_of_2_devices_run_the_same_grpo_steps_as_one_host_of_4_and_resume_exactly(tmp_path):
    data = str(tmp_path / "data")
    write_data(data)
    two, one = str(tmp_path / "two_hosts"), str(tmp_path / "one_host")
    resumed = str(tmp_path / "two_hosts_resumed")  # from two's step-1 checkpoint, by the same two processes
    port = portpicker.pick_unused_port()
    procs = [_spawn(port, i, 2, 2, data, two, resumed) for i in range(2)] + [_spawn(0, 0, 1, 4, data, one)]
    results = [_result(p) for p in procs]
    assert [(r["processes"], r["devices"]) for r in results] == [(2, 4), (2, 4), (1, 4)]
    multi, single = read_metrics(f"{two}/metrics.jsonl"), read_metrics(f"{one}/metrics.jsonl")
    assert [r["step"] for r in multi] == [r["step"] for r in single] == list(range(1, STEPS + 1))
    for a, b in zip(multi, single):
        for key in ("reward", "reward/test_text_length", "reward/format", "response_length"):
            assert a[key] == b[key], (a["step"], key, a[key], b[key])
        for key in ("loss", "pg_loss"):  # float rounding only: other micro-batches, vision stream layout
            assert abs(a[key] - b[key]) <= 1e-5, (a["step"], key, a[key], b[key])
        for key in ("kl", "entropy", "ratio_mean", "grad_norm"):
            np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-7, err_msg=f"{a['step']} {key}")
        assert a["logprob_gap"] < 1e-4 and b["logprob_gap"] < 1e-4
    assert len({r["reward"] for r in single}) > 1 and any(abs(r["loss"]) > 1e-4 for r in single)
    assert os.path.exists(f"{two}/final") and os.path.exists(f"{one}/final")

    # the resumed run: step 1's parameters, optimizer moments, sampling key and prompt position restored on
    # both hosts, so its step 2 draws the same prompts and samples and takes the same update
    again = read_metrics(f"{resumed}/metrics.jsonl")
    assert [r["step"] for r in again] == [2], again
    (a,), b = again, multi[1]
    for key in ("data/position", "reward", "reward/test_text_length", "reward/format", "response_length"):
        assert a[key] == b[key], (key, a[key], b[key])
    for key in ("loss", "pg_loss", "kl", "entropy", "ratio_mean", "grad_norm", "clip_fraction"):
        assert abs(a[key] - b[key]) <= 1e-6, (key, a[key], b[key])
    assert b["data/position"] > multi[0]["data/position"] > 0
    restored = {k: load_any(f"{d}/final")[1] for k, d in (("resumed", resumed), ("uninterrupted", two))}
    diffs = jax.tree.map(
        lambda x, y: float(np.max(np.abs(x - y))), restored["resumed"], restored["uninterrupted"]
    )
    assert max(jax.tree.leaves(diffs)) <= 1e-6  # step 2's update too
