"""The report: ratios (> 1 = ours faster), the markdown table, status lines, files written."""

import json

from lingshu_jax.bench import report
from lingshu_jax.bench.harness import summarize


def _side(**metrics):
    return {k: summarize(v) for k, v in metrics.items()} | {"memory": {"peak_rss_mb": 100.0}}


def _results():
    meta = {
        "suite": "cpu",
        "quick": True,
        "sizes": {
            "preset": "tiny",
            "batch": 2,
            "seq": 64,
            "image_side": 56,
            "decode_batch": 2,
            "decode_prompt": 16,
            "max_new_tokens": 4,
        },
        "options": {"sections": ["peak", "train", "prefill", "decode", "data"]},
        "environment": {"cpus": 2, "load_avg": [1, 1, 1], "load_avg_end": [1, 1, 1]},
        "model": {"params": {"total": 1e6}},
        "wall_s": 10.0,
    }
    train = {
        "ours": _side(tokens_per_s=[300.0, 310.0, 290.0], step_s=[1.0, 1.0, 1.0]) | {"mfu": 0.25},
        "transformers": _side(tokens_per_s=[100.0, 90.0, 110.0], step_s=[3.0, 3.0, 3.0]) | {"mfu": 0.08},
        "loss0": {"ours": 7.0, "transformers": 7.0000001},
        "loss0_abs_diff": 1e-7,
    }
    prefill = {"ours": _side(time_s=[2.0, 2.0]), "transformers": _side(time_s=[1.0, 1.0])}
    data = {"ours": _side(samples_per_s=[50.0]), "transformers": _side(samples_per_s=[100.0])}
    return {
        "meta": meta,
        "train": train,
        "prefill": prefill,
        "decode": {"pending": "generate not there"},
        "data": data,
        "peak": {"error": "RuntimeError: no"},
    }


def test_ratios_are_speedups():
    r = report.ratios(_results())
    assert r["train_tokens_per_s"] == 3.0  # 300 / 100 tokens/s
    assert r["prefill_latency"] == 0.5  # 1 s / 2 s: ours slower
    assert r["data_samples_per_s"] == 0.5
    assert r["decode_tokens_per_s"] is None  # pending


def test_table_marks_targets_and_reports_pending_and_failed_sections():
    md = report.markdown(_results())
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert (
        "3.00x" in rows["train step tokens/s (median)"] and "| yes |" in rows["train step tokens/s (median)"]
    )
    assert "**no**" in rows["data pipeline samples/s (median)"]
    assert "0.50x" in rows["prefill latency s (median, min–max)"]
    assert "25.0%" in rows["train MFU (model FLOPs / machine peak)"]
    assert "decode: pending: generate not there" in md
    assert "peak: failed: RuntimeError: no" in md


def test_gpu_table_adds_mfu_against_the_measured_matmul_peak():
    results = _results()
    md = report.markdown(results)
    assert "MFU vs measured matmul peak" not in md  # CPU: the machine peak is the measured rate already
    results["meta"].update(suite="gpu", attention_impl="cudnn")
    results["train"]["ours"]["mfu_measured_peak"] = 0.5
    results["train"]["transformers"]["mfu_measured_peak"] = 0.125
    results["peak"] = {
        "ours": summarize([6.8e14]),
        "transformers": summarize([7.5e14]),
        "machine_peak_flops": 9.89e14,
        "environment": {"ours": {"device_kind": "NVIDIA H200", "backend": "gpu"}},
    }
    md = report.markdown(results)
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert "| 50.0% | 12.5% |" in rows["train MFU vs measured matmul peak"]
    assert "prefill MFU vs measured matmul peak" not in rows
    assert "gpu: NVIDIA H200; attention cudnn" in md


def test_header_takes_the_versions_from_the_prefill_workers_when_peak_and_train_did_not_run():
    results = _results()
    del results["train"]
    results["prefill"]["ours"]["environment"] = {"jax": "0.10.2", "backend": "cpu", "device_kind": "cpu"}
    results["prefill"]["transformers"]["environment"] = {"torch": "2.13.0+cpu", "transformers": "5.24.0"}
    header = report.header(results)
    assert (
        "jax 0.10.2 (cpu: cpu" in header and "torch 2.13.0+cpu" in header and "transformers 5.24.0" in header
    )


def test_write_produces_json_and_markdown(tmp_path):
    paths = report.write(_results(), str(tmp_path))
    data = json.load(open(paths["json"]))
    assert data["ratios"]["train_tokens_per_s"] == 3.0
    assert data["train"]["ours"]["tokens_per_s"]["values"] == [300.0, 310.0, 290.0]
    assert open(paths["markdown"]).read().startswith("## lingshu-jax vs transformers")
