"""The benchmark's command line: `python -m lingshu_jax.bench` (also `scripts/benchmark.py`).

  python -m lingshu_jax.bench --suite cpu --out /tmp/bench_cpu   # bench-100m, fp32, < 10 minutes
  python -m lingshu_jax.bench --suite cpu --quick                # tiny preset, < 1 minute
  python -m lingshu_jax.bench --suite gpu --layers 4 --remat none   # 7B-shaped, bf16, cuDNN attention

Writes DIR/results.json (raw timings, medians, environment) and DIR/report.md (the table, also printed).
Exit status 2 for `--suite gpu` without a GPU (after printing the planned configuration).
"""

from __future__ import annotations

import argparse
import json
import sys

from lingshu_jax.bench import report, sections, suite
from lingshu_jax.model.attention import IMPLEMENTATIONS
from lingshu_jax.model.remat import REMAT_POLICIES

CPU_REMAT = "save_dots"  # ours' text and vision remat on --suite cpu unless given


def parse_args(argv=None) -> tuple[suite.Options, str]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (tests): under a minute")
    ap.add_argument("--preset", help="model preset (default: bench-100m on CPU, qwen2.5-vl-7b on GPU)")
    ap.add_argument("--layers", type=int, help="text decoder layers (shrinks the preset's depth)")
    ap.add_argument("--vision-layers", type=int, help="vision blocks (shrinks the tower's depth)")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--seq", type=int)
    ap.add_argument("--image", type=int, dest="image_side", help="image side in pixels (multiple of 28)")
    ap.add_argument("--rounds", type=int, help="interleaved repetitions per side (at least 2 run)")
    ap.add_argument("--max-new-tokens", type=int)
    ap.add_argument(
        "--sections", default=",".join(suite.SECTIONS), help="comma list of " + ",".join(suite.SECTIONS)
    )
    ap.add_argument(
        "--remat",
        default="none",
        choices=REMAT_POLICIES,
        help="ours: remat policy (text and vision); transformers: gradient checkpointing unless none",
    )
    ap.add_argument(
        "--vision-remat",
        choices=REMAT_POLICIES,
        help="ours: the vision tower's remat policy (default: --remat, or save_dots on --suite cpu "
        "without --remat); transformers: unchanged",
    )
    ap.add_argument(
        "--text-remat",
        choices=REMAT_POLICIES,
        help="ours: the text decoder's remat policy (default: --remat, or save_dots on --suite cpu "
        "without --remat); transformers: unchanged",
    )
    ap.add_argument(
        "--attention",
        choices=IMPLEMENTATIONS,
        help="ours' attention implementation (default: cudnn on GPU, xla on CPU)",
    )
    ap.add_argument("--hf-attn", default="sdpa", choices=("sdpa", "eager"), help="transformers' attention")
    ap.add_argument("--torch-threads", type=int, help="torch.set_num_threads (default: torch's own)")
    ap.add_argument(
        "--unroll-layers",
        action="store_true",
        help="ours: decoder layers as straight-line code instead of a scan (ModelConfig.unroll_layers)",
    )
    ap.add_argument(
        "--vision-unroll-layers",
        action="store_true",
        help="ours: vision blocks as straight-line code instead of scans (ModelConfig.vision_unroll_layers)",
    )
    ap.add_argument(
        "--vision-chunks",
        default="row",
        choices=("row", "off"),
        help="ours: the full-attention vision layers attend within each row's chunk of the stream (row: "
        "ModelConfig.vision_attention_chunks = batch, every row's image alone, as transformers' per-image "
        "attention) or over the band that one image's span reaches (off)",
    )
    ap.add_argument(
        "--malloc",
        default="auto",
        choices=("auto", "keep", "jemalloc", "default"),
        help="both frameworks' processes: jemalloc (libjemalloc.so.2 preloaded, freed pages kept; "
        "$LINGSHU_JEMALLOC or the system's: apt install libjemalloc2); glibc malloc keeping freed memory "
        "for reuse, as our training scripts do on a CPU host (lingshu_jax/host_memory.py); glibc's "
        "defaults; auto (the default): jemalloc where it is found, else keep",
    )
    ap.add_argument(
        "--breakdown",
        default="auto",
        choices=("auto", "always", "never"),
        help="time the parts of a train step: when the target is missed (auto), always, never",
    )
    ap.add_argument(
        "--budget", type=float, dest="budget_s", help="seconds; extra rounds stop when it runs out"
    )
    ap.add_argument("--allow-cpu", action="store_true", help="run --suite gpu's code path on CPU (testing)")
    ap.add_argument("--out", default=None, help="output directory (default /tmp/bench_<suite>)")
    a = ap.parse_args(argv)
    if a.suite == "cpu" and a.remat == "none":  # measured best on CPU (docs/benchmark_cpu.md)
        a.text_remat = a.text_remat or CPU_REMAT
        a.vision_remat = a.vision_remat or CPU_REMAT
    opts = suite.Options(**{k: v for k, v in vars(a).items() if k not in ("out", "sections")})
    opts.sections = tuple(s for s in a.sections.split(",") if s)
    return opts, a.out or f"/tmp/bench_{a.suite}{'_quick' if a.quick else ''}"


def main(argv=None) -> int:
    opts, out_dir = parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    try:
        results = suite.run_suite(opts, log=log)
    except sections.NoGPUError as e:
        plan = getattr(e, "results", {}).get("meta", {})
        print(
            json.dumps(
                {k: plan.get(k) for k in ("model", "sizes", "train_flops_per_step", "devices")},
                indent=2,
                default=str,
            )
        )
        print(f"error: {e}", file=sys.stderr)
        return 2
    paths = report.write(results, out_dir)
    print(report.markdown(dict(results, ratios=report.ratios(results))))
    print(f"results: {paths['json']}\nreport:  {paths['markdown']}")
    return 0
