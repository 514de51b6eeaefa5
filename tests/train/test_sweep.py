"""Sweeps: commands carry the run's config argument and overrides; results tabulate the last metrics."""

import csv
import json
import os

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
