"""scripts/evaluate.py through a subprocess: `score` on a predictions file, `run` with a fake generator hook."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "scripts", "evaluate.py")


def _run(*args, timeout=120):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, SCRIPT, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_score_cli_prints_and_writes_metrics(tmp_path, fixtures_dir):
    preds = tmp_path / "p.jsonl"
    preds.write_text(
        "\n".join(json.dumps({"id": i, "response": r}) for i, r in [("0", "D"), ("1", "The answer is B")])
        + "\n"
    )
    proc = _run(
        "score",
        "--benchmark",
        "MedQA_USMLE",
        "--data_dir",
        fixtures_dir,
        "--predictions",
        str(preds),
        "--out",
        str(tmp_path / "res"),
    )
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert printed["total"] == {"total": 2, "right": 1, "acc": 0.5}
    saved = json.loads((tmp_path / "res" / "MedQA_USMLE" / "metrics.json").read_text())
    assert saved["total"]["acc"] == 0.5


def test_score_cli_missing_predictions_fail_with_the_reason(tmp_path, fixtures_dir):
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": "1", "response": "A"}) + "\n")
    proc = _run(
        "score", "--benchmark", "MedQA_USMLE", "--data_dir", fixtures_dir, "--predictions", str(preds)
    )
    assert proc.returncode != 0 and "no prediction for 1 of 2" in proc.stderr


def test_run_cli_with_generate_fn_hook(tmp_path, fixtures_dir):
    out = tmp_path / "run"
    proc = _run(
        "run",
        "--model",
        "/models/fake-7b",
        "--benchmarks",
        "PMC_VQA,PubMedQA",
        "--data_dir",
        fixtures_dir,
        "--out",
        str(out),
        "--generate_fn",
        "tests.evals.fake_generation:make_generate_fn",
        "--no_progress",
    )
    assert proc.returncode == 0, proc.stderr
    assert "| fake-7b |" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["PMC_VQA"]["total"]["acc"] == 1.0 and summary["PubMedQA"]["total"]["acc"] == 1.0
    assert (out / "PubMedQA" / "predictions.jsonl").read_text().count("\n") == 2


def test_run_cli_rejects_unknown_benchmarks(tmp_path, fixtures_dir):
    proc = _run(
        "run",
        "--model",
        "m",
        "--benchmarks",
        "VQA_RAD,NOPE",
        "--data_dir",
        fixtures_dir,
        "--out",
        str(tmp_path),
        "--generate_fn",
        "tests.evals.fake_generation:make_generate_fn",
    )
    assert proc.returncode != 0 and "unknown benchmarks ['NOPE']" in proc.stderr
