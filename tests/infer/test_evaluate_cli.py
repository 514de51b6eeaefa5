"""`scripts/evaluate.py run` with the JAX generator on a real (tiny) model: predictions, metrics, table."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "evals", "fixtures")


def test_evaluate_run_generates_scores_and_resumes(tiny_hf_dir, tmp_path):
    cmd = [
        sys.executable,
        "scripts/evaluate.py",
        "run",
        "--model",
        tiny_hf_dir,
        "--benchmarks",
        "VQA_RAD,PubMedQA",
        "--data_dir",
        FIXTURES,
        "--out",
        str(tmp_path),
        "--max_new_tokens",
        "4",
    ]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    preds = [json.loads(line) for line in open(tmp_path / "VQA_RAD" / "predictions.jsonl")]
    metrics = json.load(open(tmp_path / "VQA_RAD" / "metrics.json"))
    assert len(preds) == metrics["num_items"] > 0
    assert "VQA-RAD" in open(tmp_path / "results.md").read()
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)  # resumes: nothing to redo
    assert again.returncode == 0
    assert [json.loads(line) for line in open(tmp_path / "VQA_RAD" / "predictions.jsonl")] == preds
