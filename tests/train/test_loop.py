"""The training core's loop (`train/loop.py`) with stand-in step functions: when it logs, checkpoints and
stops; the SFT and GRPO trainers' own tests run it with real steps."""

import ml_collections

from lingshu_jax.train import loop
from lingshu_jax.train.checkpoint import Checkpointer
from lingshu_jax.train.metrics import read_metrics


def _run(tmp_path, stop_at=None, data_ends_at=None):
    config = ml_collections.ConfigDict(
        {"train": {"total_steps": 10, "log_every": 2, "checkpoint_every": 4, "progress": False}}
    )
    saved = []

    def step_fn(state, step):
        if step == stop_at:
            raise loop.StopRequested()
        if step == data_ends_at:
            return None
        return state + 1, {"x": float(step)}

    def log_fn(step, rows):
        return {"x": rows[-1]["x"], "rows": float(len(rows))}

    def save_fn(step, state, metrics):
        saved.append((step, state, metrics["x"]))

    ckpt = Checkpointer(str(tmp_path / "ck"))
    result = loop.run_loop(config, str(tmp_path), ckpt, 0, 0, step_fn, log_fn, save_fn, plot=False)
    return result, saved, read_metrics(str(tmp_path / "metrics.jsonl"))


def test_a_full_run_logs_every_2_checkpoints_every_4_and_at_the_end(tmp_path):
    result, saved, rows = _run(tmp_path)
    assert (result.state, result.step, result.completed) == (10, 10, True)
    assert [s for s, _, _ in saved] == [4, 8, 10]
    assert [(r["step"], r["x"], r["rows"]) for r in rows] == [(s, float(s), 2.0) for s in (2, 4, 6, 8, 10)]


def test_a_stop_requested_while_waiting_checkpoints_the_last_step_and_does_not_complete(tmp_path):
    result, saved, _ = _run(tmp_path, stop_at=7)
    assert (result.state, result.step, result.completed) == (6, 6, False)
    assert saved == [(4, 4, 4.0), (6, 6, 6.0)]


def test_exhausted_data_ends_the_run_without_completing_it(tmp_path):
    result, saved, _ = _run(tmp_path, data_ends_at=6)
    assert (result.state, result.step, result.completed) == (5, 5, False)
    assert [s for s, _, _ in saved] == [4]
