"""The trainer end to end on the embedded demo: loss falls, stages chain, frozen weights stay frozen,
SIGKILL/SIGTERM resume exactly, a checkpoint restores onto another mesh, bad configs fail early."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
import transformers

from configs import demo
from lingshu_jax.convert.load import load_any
from lingshu_jax.train.checkpoint import Checkpointer
from lingshu_jax.train.metrics import read_metrics
from lingshu_jax.train.trainer import train

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cfg(root, stage, steps, arg="", **train_kw):
    c = demo.get_config(f"stage={stage},root={root},steps={steps}{arg}")
    c.train.progress = False
    c.train.log_every = 1
    c.eval.every = 0
    c.export_hf = ""
    for k, v in train_kw.items():
        c.train[k] = v
    return c


def _losses(workdir):
    return [(r["step"], r["loss"]) for r in read_metrics(os.path.join(workdir, "metrics.jsonl"))]


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def chained(demo_root):
    """Stage 1 (Lingshu's: LLM frozen; the demo's default trains it) -> 2 -> 3 with a few steps each; stage 3
    exports to HF."""
    for stage, steps in ((1, 3), (2, 2), (3, 2)):
        c = _cfg(demo_root, stage, steps, ",stage1_llm=false" if stage == 1 else "", checkpoint_initial=True)
        if stage == 3:
            c.export_hf = os.path.join(demo_root, "hf_export")
        train(c, os.path.join(demo_root, f"stage{stage}"))
    return demo_root


def test_demo_loss_falls(tmp_path):
    c = _cfg(str(tmp_path), 3, 25)
    c.init_from = ""
    train(c, str(tmp_path / "run"))
    losses = [loss for _, loss in _losses(str(tmp_path / "run"))]
    assert len(losses) == 25
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5]), losses


def test_stage1_keeps_the_frozen_llm_bit_identical(chained):
    ck = Checkpointer(os.path.join(chained, "stage1", "checkpoints"))
    initial = ck.restore(0, None)["params"]  # the trainer's own starting point (step-0 checkpoint)
    ck.close()
    _, final, _ = load_any(os.path.join(chained, "stage1"))
    for part in ("model", "lm_head"):
        for a, b in zip(jax.tree.leaves(initial[part]), jax.tree.leaves(final[part])):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    moved = [
        not np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(jax.tree.leaves(initial["visual"]), jax.tree.leaves(final["visual"]))
    ]
    assert all(moved)


def test_stages_chain_and_the_export_loads_in_transformers(chained):
    _, s2_final, _ = load_any(os.path.join(chained, "stage2"))
    _, s1_final, _ = load_any(os.path.join(chained, "stage1"))
    # stage 2 started from stage 1: its first logged step's loss is stage-1 quality, and its weights moved on
    assert len(_losses(os.path.join(chained, "stage2"))) == 2
    assert not np.array_equal(
        np.asarray(s1_final["model"]["norm"]["scale"]), np.asarray(s2_final["model"]["norm"]["scale"])
    )
    hf = transformers.AutoModelForImageTextToText.from_pretrained(os.path.join(chained, "hf_export"))
    assert type(hf).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert os.path.exists(os.path.join(chained, "hf_export", "tokenizer.json"))
    assert os.path.exists(os.path.join(chained, "stage3", "curves.png"))
    assert os.listdir(os.path.join(chained, "stage3", "tensorboard"))


def _cli(workdir, root, steps, extra=()):
    cmd = [
        sys.executable,
        "scripts/train.py",
        f"--config=configs/demo.py:stage=3,root={root},steps={steps}",
        f"--workdir={workdir}",
        "--config.init_from=",
        "--config.eval.every=0",
        "--config.train.log_every=1",
        "--config.train.checkpoint_every=3",
        "--config.train.progress=False",
        "--config.export_hf=",
        *extra,
    ]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def _wait_for_step(workdir, step, proc, timeout=300):
    path = os.path.join(workdir, "metrics.jsonl")
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.stderr.read()[-2000:]}")
        if os.path.exists(path) and any(r["step"] >= step for r in read_metrics(path)):
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_sigkill_then_rerun_gives_bit_identical_losses(demo_root, tmp_path):
    steps = 12
    ref = _cli(str(tmp_path / "ref"), demo_root, steps)
    assert ref.wait(timeout=600) == 0, ref.stderr.read()[-2000:]
    seed = int(os.environ.get("KILL_SEED", np.random.SeedSequence().entropy % 2**32))
    kill_at = int(np.random.default_rng(seed).integers(4, 10))  # rerun a failure with KILL_SEED=<seed>
    work = str(tmp_path / "killed")
    p = _cli(work, demo_root, steps)
    _wait_for_step(work, kill_at, p)
    p.send_signal(signal.SIGKILL)
    p.wait()
    again = _cli(work, demo_root, steps)
    assert again.wait(timeout=600) == 0, again.stderr.read()[-2000:]
    assert _losses(work) == _losses(str(tmp_path / "ref")), f"killed at step >= {kill_at} (KILL_SEED={seed})"


def test_sigterm_saves_a_checkpoint_and_rerun_finishes(demo_root, tmp_path):
    work = str(tmp_path / "term")
    p = _cli(work, demo_root, 40)
    _wait_for_step(work, 4, p)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=120) == 0
    ck = Checkpointer(os.path.join(work, "checkpoints"))
    stopped = max(r["step"] for r in read_metrics(os.path.join(work, "metrics.jsonl")))
    assert ck.latest_step() == stopped and stopped < 40
    ck.close()


def test_partially_written_checkpoint_is_never_restored(tmp_path):
    ck = Checkpointer(str(tmp_path / "ck"), async_save=False)
    ck.save(1, {"w": np.ones(3)})
    ck.close()
    os.makedirs(tmp_path / "ck" / "2.orbax-checkpoint-tmp-1234" / "state")  # a save killed mid-way
    ck = Checkpointer(str(tmp_path / "ck"))
    assert ck.latest_step() == 1
    ck.close()


def test_checkpoint_restores_onto_a_different_mesh(tmp_path):
    root = str(tmp_path)
    ref = _cfg(root, 3, 4, checkpoint_every=2)
    ref.init_from = ""
    ref.mesh.fsdp = 8
    train(ref, str(tmp_path / "ref"))
    part = _cfg(root, 3, 4, checkpoint_every=2, total_steps=2)  # same schedule, stopped after step 2
    part.init_from = ""
    part.mesh.fsdp = 8
    train(part, str(tmp_path / "resumed"))
    rest = _cfg(root, 3, 4, checkpoint_every=2)
    rest.init_from = ""
    rest.mesh.fsdp, rest.mesh.tensor = 4, 2
    train(rest, str(tmp_path / "resumed"))
    a, b = dict(_losses(str(tmp_path / "ref"))), dict(_losses(str(tmp_path / "resumed")))
    assert sorted(b) == [1, 2, 3, 4]
    for step in (3, 4):
        assert abs(a[step] - b[step]) <= 1e-5 * abs(a[step])


def test_non_finite_steps_are_skipped_then_the_run_stops(tmp_path):
    c = _cfg(str(tmp_path), 3, 20, max_bad_steps=3)
    c.init_from = ""
    c.optim.clip_norm = 0.0
    for g in c.optim.groups:
        g[1]["peak"] = 1e30  # the first update blows the weights up; every later loss is non-finite
    with pytest.raises(FloatingPointError, match="3 consecutive steps"):
        train(c, str(tmp_path / "run"))


def test_config_errors_fail_before_compiling_and_name_the_key(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "scripts/train.py",
            "--config=configs/demo.py",
            f"--workdir={tmp_path}",
            "--config.train.no_such_key=1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "no_such_key" in out.stderr
    c = _cfg(str(tmp_path), 3, 2)
    c.mesh.fsdp = 64
    with pytest.raises(ValueError, match="needs 64 devices"):
        train(c, str(tmp_path / "run"))


def test_in_training_benchmark_eval_logs_medevalkit_accuracy(tmp_path):
    c = _cfg(str(tmp_path), 3, 2)
    c.init_from = ""
    c.eval.every = 2
    c.eval.data = None
    c.eval.benchmarks = ["VQA_RAD"]
    c.eval.benchmark_dir = os.path.join(ROOT, "tests", "evals", "fixtures")
    c.eval.max_new_tokens = 4
    train(c, str(tmp_path / "run"))
    row = read_metrics(str(tmp_path / "run" / "metrics.jsonl"))[-1]
    assert 0.0 <= row["bench/VQA_RAD/acc"] <= 1.0
    assert os.path.exists(tmp_path / "run" / "evals" / "step_2" / "VQA_RAD" / "predictions.jsonl")


def test_keeps_the_latest_and_the_best_checkpoint(tmp_path):
    ck = Checkpointer(
        str(tmp_path / "ck"), keep_last=1, keep_best=1, best_metric="eval/accuracy", async_save=False
    )
    for step, acc in ((1, 0.2), (2, 0.9), (3, 0.4), (4, 0.5)):
        ck.save(step, {"w": np.full(2, step)}, metrics={"eval/accuracy": acc})
    assert ck.all_steps() == [2, 4]  # best (0.9 at step 2) + latest
    ck.close()


def test_cli_on_a_fsdp4_tensor2_mesh_logs_the_first_losses_of_one_device(demo_root, tmp_path):
    def run(name, devices, extra):
        cmd = [
            sys.executable,
            "scripts/train.py",
            f"--config=configs/demo.py:stage=3,root={demo_root},steps=4",
            f"--workdir={tmp_path / name}",
            "--config.init_from=",
            "--config.eval.every=0",
            "--config.train.log_every=1",
            "--config.train.progress=False",
            "--config.export_hf=",
            *extra,
        ]
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
        out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
        return dict(_losses(str(tmp_path / name)))

    one = run("one", 1, [])
    mesh = run("mesh", 8, ["--config.mesh.fsdp=4", "--config.mesh.tensor=2"])
    assert sorted(one) == sorted(mesh) == [1, 2, 3, 4]
    for step in one:
        assert abs(one[step] - mesh[step]) <= 1e-5 * abs(one[step]), (step, one[step], mesh[step])


def test_sigterm_while_waiting_for_data_checkpoints_the_last_step_and_returns(tmp_path):
    """Eight long good records (two batches), then 20k rejected ones: step 2 waits for data for seconds;
    a SIGTERM then ends the run within the time limit, with step 1 checkpointed (data state included)."""
    import threading

    from tests.data.test_guard import time_limit

    good = {"messages": [{"role": "user", "content": "word " * 30}, {"role": "assistant", "content": "ok"}]}
    bad = [
        {
            "messages": [{"role": "user", "content": "<image>?"}, {"role": "assistant", "content": "y"}],
            "images": [f"missing/{i}.png"],
        }
        for i in range(20_000)
    ]
    path = tmp_path / "slow.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [good] * 8 + bad))
    c = _cfg(str(tmp_path), 3, 10)
    c.init_from = ""
    c.data.sources = [{"name": "slow", "paths": [str(path)], "root": str(tmp_path)}]
    c.data.update(shuffle=False, pack_pool=1, batch_size=4, max_segments_per_row=1, seq_len=256, prefetch=0)
    work = str(tmp_path / "run")
    metrics = os.path.join(work, "metrics.jsonl")

    def _term_after_step_1():
        while not (os.path.exists(metrics) and read_metrics(metrics)):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=_term_after_step_1, daemon=True).start()
    with time_limit(300):
        train(c, work)
    ck = Checkpointer(os.path.join(work, "checkpoints"))
    assert ck.latest_step() == 1 and [s for s, _ in _losses(work)] == [1]
    ck.close()
