"""A whole `--quick` run (tiny preset, every section, real workers): the report is well formed and both
frameworks computed the same step-0 loss. Timings are never asserted."""

import json
import os
import sys

import pytest

from lingshu_jax.bench import report, suite

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    results = suite.run_suite(suite.Options(suite="cpu", quick=True), log=lambda msg: None)
    out = str(tmp_path_factory.mktemp("bench"))
    return results, report.write(results, out)


def _stats_ok(s):
    return s["n"] >= 1 and s["median"] is not None and len(s["values"]) == s["n"] + s["invalid"]


def test_every_section_ran(quick):
    results, _ = quick
    for name in suite.SECTIONS:
        assert name in results, name
        assert "error" not in results[name], results[name].get("traceback")


def test_step0_losses_agree(quick):
    results, _ = quick
    train = results["train"]
    assert train["loss0_abs_diff"] < 1e-3, train["loss0"]
    assert _stats_ok(train["ours"]["step_s"]) and _stats_ok(train["transformers"]["tokens_per_s"])
    assert train["ours"]["compile_s"] > 0 and "first_step_overhead_s" in train["transformers"]
    assert 0 < train["ours"]["mfu"] and 0 < train["transformers"]["mfu"]


def test_report_structure(quick):
    results, paths = quick
    data = json.load(open(paths["json"]))
    assert set(data["ratios"]) == {
        "train_tokens_per_s",
        "prefill_latency",
        "decode_tokens_per_s",
        "decode_e2e_tokens_per_s",
        "data_samples_per_s",
    }
    assert data["ratios"]["train_tokens_per_s"] > 0 and data["ratios"]["prefill_latency"] > 0
    env = data["peak"]["environment"]
    assert env["ours"]["jax"] and env["transformers"]["torch"] and env["transformers"]["torch_threads"] >= 1
    assert env["ours"]["device_count"] == 1  # the workers drop the test run's 8 simulated devices
    for section in ("prefill", "decode"):  # the report's versions when peak did not run
        assert data[section]["ours"]["environment"]["jax"] == env["ours"]["jax"]
        assert data[section]["transformers"]["environment"]["torch"] == env["transformers"]["torch"]
    assert data["peak"]["machine_peak_flops"] == max(
        data["peak"]["ours"]["max"], data["peak"]["transformers"]["max"]
    )
    for side in ("ours", "transformers"):
        assert data["train"][side]["memory"]["peak_rss_mb"] > 0
        assert data["data"][side]["memory"]["peak_rss_mb"] > 0
    assert data["decode"]["agreement"]["tokens_per_row"] == data["meta"]["sizes"]["max_new_tokens"]
    md = open(paths["markdown"]).read()
    assert md.count("\n| ") >= 10 and "train step tokens/s" in md and "decode tokens/s" in md


def test_gpu_suite_refuses_clearly_without_a_gpu(capsys, monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")  # the device probe (a subprocess) sees no GPU, on any machine
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    try:
        import benchmark
    finally:
        sys.path.pop(0)
    code = benchmark.main(["--suite", "gpu", "--quick", "--sections", "train"])
    captured = capsys.readouterr()
    assert code == 2
    assert "no GPU found" in captured.err
    plan = json.loads(captured.out)
    assert plan["model"]["preset"] == "qwen2.5-vl-7b" and plan["train_flops_per_step"]["total"] > 0
