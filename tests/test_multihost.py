"""Two jax.distributed processes on 127.0.0.1 (4 CPU devices each) compute what one process with 8 devices
computes: the loss of a global batch, and one step of the trainer's program on the same global batch."""

import portpicker

from tests.processes import result, spawn


def _run(args):
    return spawn("tests.multihost_worker", args)


def _result(proc):
    return result(proc, timeout=300)


def test_two_hosts_of_4_train_the_same_global_batch_and_loss_as_one_host_of_8():
    port = str(portpicker.pick_unused_port())
    procs = [_run([port, str(i), "2", "4"]) for i in range(2)] + [_run(["0", "0", "1", "8"])]  # all at once
    *results, single = [_result(p) for p in procs]
    assert all(r["devices"] == 8 for r in results) and single["devices"] == 8
    assert [r["host_rows"] for r in results] == [4, 4] and single["host_rows"] == 8
    for r in results:
        assert abs(r["loss"] - single["loss"]) <= 1e-5 * abs(single["loss"])
        assert abs(r["grad_sq"] - single["grad_sq"]) <= 1e-4 * abs(single["grad_sq"])
        assert r["global_rows"] == single["global_rows"] == 16  # 2 micro-batches x 8 global rows
        assert r["step_tokens"] == single["step_tokens"]
        assert abs(r["step_loss"] - single["step_loss"]) <= 1e-5 * abs(single["step_loss"])
