"""Sweeps: commands carry the run's config argument and overrides; results tabulate the last metrics."""

import csv
import json
import os
import subprocess
import sys

import pytest

from lingshu_jax.train import sweep

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_demo_sweep_is_2x2_with_one_command_per_run():
    runs = sweep.load_sweep(os.path.join(ROOT, "configs/sweeps/demo_lr.py"), "/r")
    assert len(runs) == 4
    cmd = sweep.command(runs[1], "/r", python="python")
    assert cmd[:2] == ["python", "scripts/train.py"]
    assert "--config=configs/demo.py:stage=3,steps=80,root=/r,lr=0.001" in cmd
    assert "--workdir=/r/lr0.001_wd0.1" in cmd and "--config.optim.weight_decay=0.1" in cmd


def test_results_table_csv_and_plot_use_the_last_logged_values(tmp_path):
    runs = [{"name": "a"}, {"name": "b"}]
    for i, r in enumerate(runs):
        os.makedirs(tmp_path / r["name"])
        with open(tmp_path / r["name"] / "metrics.jsonl", "w") as f:
            f.write(json.dumps({"step": 10, "loss": 2.0 + i}) + "\n")
            f.write(json.dumps({"step": 20, "loss": 1.0 + i, "eval/accuracy": 0.5 + i / 10}) + "\n")
    rows = sweep.summarize(runs, str(tmp_path))
    assert rows[1]["loss"] == 2.0 and rows[1]["eval/accuracy"] == 0.6 and rows[0]["steps"] == 20
    paths = sweep.write_results(rows, str(tmp_path))
    assert "| a | 20 | 1 |" in open(paths["markdown"]).read()
    assert list(csv.DictReader(open(paths["csv"])))[1]["loss"] == "2.0"
    assert os.path.getsize(paths["plot"]) > 1000


# ------------------------------------------------------------------------ orchestration (mocked runs)
class _FakeRun:
    """Stands for a run's subprocess: finishes on its second poll, writing the final checkpoint marker."""

    active = 0
    most_active = 0

    def __init__(self, argv, cwd, env, stdout, stderr, fail=False):
        self.argv, self.env, self.polls, self.fail = argv, env, 0, fail
        self.workdir = argv[2].split("--workdir=")[1].split()[0]
        _FakeRun.active += 1
        _FakeRun.most_active = max(_FakeRun.most_active, _FakeRun.active)

    def poll(self):
        self.polls += 1
        if self.polls < 2:
            return None
        _FakeRun.active -= 1
        if self.fail:
            return 3
        os.makedirs(os.path.join(self.workdir, "final"), exist_ok=True)
        open(os.path.join(self.workdir, "final", "lingshu_checkpoint.json"), "w").close()
        return 0


def test_run_all_skips_complete_runs_and_runs_the_rest_concurrently_on_disjoint_gpus(tmp_path):
    runs = sweep.load_sweep(os.path.join(ROOT, "configs/sweeps/demo_mixture.py"), str(tmp_path))
    assert [r["name"] for r in runs] == ["dicom_w0", "dicom_w5", "dicom_w50"]
    os.makedirs(tmp_path / "dicom_w5" / "final")
    open(tmp_path / "dicom_w5" / "final" / "lingshu_checkpoint.json", "w").close()
    spawned = []

    def spawn(argv, **kw):
        spawned.append(_FakeRun(argv, **kw))
        return spawned[-1]

    _FakeRun.active = _FakeRun.most_active = 0
    launched = sweep.run_all(
        runs, str(tmp_path), ROOT, parallel=2, devices_per_run=2, platform="gpu", spawn=spawn, poll_s=0
    )
    assert launched == ["dicom_w0", "dicom_w50"] and _FakeRun.most_active == 2
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in spawned] == ["0,1", "2,3"]
    assert "w_vqa=50,w_dicom=0.0" in spawned[0].argv[2] and "--config.init_from=" in spawned[0].argv[2]
    assert all(sweep.is_complete(r, str(tmp_path)) for r in runs)
    assert sweep.run_all(runs, str(tmp_path), ROOT, spawn=spawn) == []  # all complete: nothing launched


def test_run_all_names_the_runs_that_failed(tmp_path):
    runs = [{"name": "ok", "config": "c"}, {"name": "bad", "config": "c"}]
    spawn = lambda argv, **kw: _FakeRun(argv, fail="/bad " in argv[2] + " ", **kw)
    with pytest.raises(RuntimeError, match=r"\['bad'\]"):
        sweep.run_all(runs, str(tmp_path), ROOT, parallel=2, spawn=spawn, poll_s=0)


def test_device_env_splits_a_cpu_into_a_device_count_per_run_and_tpu_chips_per_slot():
    env = {**os.environ, **sweep.device_env(1, 3, "cpu")}
    out = subprocess.run(
        [sys.executable, "-c", "import jax; print(jax.device_count())"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "3"
    tpu = sweep.device_env(1, 2, "tpu")
    assert tpu["TPU_VISIBLE_CHIPS"] == "2,3" and tpu["TPU_CHIPS_PER_PROCESS_BOUNDS"] == "1,2,1"
    with pytest.raises(ValueError, match="platform"):
        sweep.device_env(0, 1, "fpga")


def test_results_include_benchmark_scores_and_every_logged_eval_metric(tmp_path):
    runs = [{"name": "a", "config": "c", "eval": {"benchmarks": "VQA_RAD", "data_dir": "/d"}}]
    os.makedirs(tmp_path / "a" / "eval")
    with open(tmp_path / "a" / "metrics.jsonl", "w") as f:
        f.write(json.dumps({"step": 5, "loss": 1.5, "eval/accuracy": 0.4, "eval/samples": 50}) + "\n")
    with open(tmp_path / "a" / "eval" / "summary.json", "w") as f:
        json.dump(
            {
                "VQA_RAD": {"total": {"total": 10, "right": 7, "acc": 0.7}},
                "MIMIC_CXR": {"bleu4": 0.12, "notes": "x"},
            },
            f,
        )
    rows = sweep.summarize(runs, str(tmp_path))
    assert rows[0]["bench/VQA_RAD"] == 0.7 and rows[0]["bench/MIMIC_CXR/bleu4"] == 0.12
    assert rows[0]["eval/samples"] == 50
    cmd = sweep.eval_command(runs[0], str(tmp_path), python="python")
    assert cmd[:3] == ["python", "scripts/evaluate.py", "run"] and f"--out={tmp_path}/a/eval" in cmd
    paths = sweep.write_results(rows, str(tmp_path))
    with open(paths["markdown"]) as f:
        assert "bench/VQA_RAD" in f.readline()
    with open(paths["csv"]) as f:
        assert next(csv.DictReader(f))["bench/VQA_RAD"] == "0.7"
    assert os.path.getsize(paths["plot"]) > 1000
