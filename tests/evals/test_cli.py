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
    assert "| MedQA_USMLE | default | 2 | 50.0 |" in proc.stdout  # per-benchmark table
    columns = (
        "MMLU-Med | PubMedQA | MedMCQA | MedQA | Medbullets | MedXpertQA | SuperGPQA"  # the paper's order
    )
    head = f"| Model | {columns} | Avg. (1/7) |"
    assert head in proc.stdout and "| model | – | – | – | 50.0 | – | – | – | 50.0 |" in proc.stdout
    saved = json.loads((tmp_path / "res" / "MedQA_USMLE" / "metrics.json").read_text())
    assert saved["total"] == {"total": 2, "right": 1, "acc": 0.5} and saved["scoring"] == "default"
    csv_rows = (tmp_path / "res" / "results.csv").read_text().splitlines()
    assert "model,text,MedQA,MedQA_USMLE,acc,0.5" in csv_rows and "model,text,Avg.,,acc,0.5" in csv_rows


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
        "vqa_rad,NOPE",
        "--data_dir",
        fixtures_dir,
        "--out",
        str(tmp_path),
        "--generate_fn",
        "tests.evals.fake_generation:make_generate_fn",
    )
    assert proc.returncode != 0 and "unknown benchmark 'NOPE'; valid names (any case): " in proc.stderr
    assert not (tmp_path / "VQA_RAD").exists()  # nothing generated before the names are checked


def test_readme_evaluation_commands_work_as_printed(tmp_path, fixtures_dir):
    # README: `run --model hf/ --benchmarks vqa_rad,slake ...` and `score --benchmark vqa_rad ...`
    out = tmp_path / "results"
    proc = _run(
        *("run", "--model", "hf/", "--benchmarks", "vqa_rad,slake", "--data_dir", fixtures_dir),
        *("--out", str(out), "--generate_fn", "tests.evals.fake_generation:make_generate_fn"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "| hf |" in proc.stdout and "Avg. (2/7)" in proc.stdout
    assert "100%" in proc.stderr  # the progress bar over items
    preds = tmp_path / "p.jsonl"
    preds.write_text((out / "VQA_RAD" / "predictions.jsonl").read_text())
    proc = _run("score", "--benchmark", "vqa_rad", "--data_dir", fixtures_dir, "--predictions", str(preds))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "p_scored" / "results.csv").exists()
    assert "| VQA_RAD | default | 4 | 100.0 |" in proc.stdout


def test_fixes_cli_names_what_each_fix_changes(fixtures_dir):
    preds = os.path.join(fixtures_dir, "responses", "SLAKE.jsonl")
    proc = _run("fixes", "--benchmark", "slake", "--data_dir", fixtures_dir, "--predictions", preds)
    assert proc.returncode == 0, proc.stderr
    assert "slake_yesno_case: SLAKE total.acc 75.0 -> 100.0, closed.acc 66.7 -> 100.0" in proc.stdout


def test_scoring_flag_selects_medevalkit_mode(tmp_path, fixtures_dir):
    preds = os.path.join(fixtures_dir, "responses", "SLAKE.jsonl")
    proc = _run(
        "score",
        "--benchmark",
        "SLAKE",
        "--data_dir",
        fixtures_dir,
        "--predictions",
        preds,
        "--scoring",
        "medevalkit",
        "--out",
        str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    assert "| SLAKE | medevalkit | 4 | 75.0 | 66.7 | 100.0 |" in proc.stdout
