"""The benchmark suite: sizes, per-section orchestration of the framework workers, results dict.

Sections (each in fresh worker processes, one per framework, alive together so their runs interleave):
  peak     matmul FLOP/s in JAX and torch (the CPU "peak" for MFU)
  train    training step (train.py)
  prefill  forward of the prompt batch (prefill.py)   } one worker per framework
  decode   greedy generation (decode.py)              }
  data     input pipeline (data.py, data_measure.py, data_samples.py)
A section that fails records its error and the suite goes on. `run_suite` returns plain JSON-able data;
`report.py` turns it into the table.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import tempfile
import time
import traceback
from typing import Any

from lingshu_jax import host_memory
from lingshu_jax.bench import sections
from lingshu_jax.bench.harness import Deadline, summarize

SECTIONS = ("peak", "train", "prefill", "decode", "data")


@dataclasses.dataclass
class Options:
    suite: str = "cpu"  # "cpu" | "gpu"
    quick: bool = False
    preset: str | None = None
    layers: int | None = None
    vision_layers: int | None = None
    batch: int | None = None
    seq: int | None = None
    image_side: int | None = None
    rounds: int | None = None
    max_new_tokens: int | None = None
    sections: tuple[str, ...] = SECTIONS
    remat: str = "none"
    vision_remat: str | None = None  # ours' vision tower only; None: as `remat`
    text_remat: str | None = None  # ours' text decoder only; None: as `remat`
    hf_attn: str = "sdpa"
    attention: str | None = None  # ours' attention_impl; None: "cudnn" on GPU, "xla" elsewhere
    torch_threads: int | None = None
    allow_cpu: bool = False  # run the gpu suite's code path on CPU (tests)
    budget_s: float | None = None
    breakdown: str = "auto"  # "auto" (when a target is missed) | "always" | "never"
    unroll_layers: bool = False  # ours: decoder layers unrolled instead of scanned
    vision_unroll_layers: bool = False  # ours: vision blocks unrolled instead of scanned
    vision_chunks: str = "row"  # ours: full vision layers per row's stream chunk ("row") or the band ("off")
    # Both frameworks' processes (host_memory.py): "auto" (jemalloc where found, else "keep") | "keep" (glibc
    # keeping freed memory) | "jemalloc" | "default" (glibc as is). The same default as the command line.
    malloc: str = "auto"


# Sizes per (suite, quick). rounds: interleaved repetitions per side (the median is reported).
SIZES = {
    ("cpu", False): dict(
        preset="bench-100m",
        batch=4,
        seq=512,
        image_side=448,
        rounds=3,
        decode_batch=4,
        decode_prompt=128,
        max_new_tokens=32,
        data_samples=480,
        data_image=448,
        data_tokens=512,
        data_seq_len=8192,
        data_rounds=3,
        peak_n=2048,
        budget_s=500,
    ),
    ("cpu", True): dict(
        preset="tiny",
        batch=2,
        seq=64,
        image_side=56,
        rounds=2,
        decode_batch=2,
        decode_prompt=16,
        max_new_tokens=4,
        data_samples=6,
        data_image=56,
        data_tokens=64,
        data_seq_len=256,
        data_rounds=1,
        peak_n=256,
        budget_s=120,
    ),
    ("gpu", False): dict(
        preset="qwen2.5-vl-7b",
        layers=4,
        batch=4,
        seq=2048,
        image_side=448,
        rounds=5,
        decode_batch=8,
        decode_prompt=512,
        max_new_tokens=128,
        data_samples=480,
        data_image=448,
        data_tokens=512,
        data_seq_len=8192,
        data_rounds=3,
        peak_n=8192,
        budget_s=570,
    ),
    ("gpu", True): dict(
        preset="qwen2.5-vl-7b",
        layers=1,
        vision_layers=2,
        batch=1,
        seq=512,
        image_side=448,
        rounds=2,
        decode_batch=2,
        decode_prompt=64,
        max_new_tokens=8,
        data_samples=6,
        data_image=56,
        data_tokens=64,
        data_seq_len=256,
        data_rounds=1,
        peak_n=1024,
        budget_s=120,
    ),
}


def resolve_sizes(opts: Options) -> dict[str, Any]:
    """The suite's sizes with the command line's overrides. `--suite gpu --quick --allow-cpu` (a test of
    the GPU code path on a CPU host) takes the CPU quick sizes: a 7B-shaped layer does not fit beside
    its twin in a small host's memory."""
    key = ("cpu", True) if opts.suite == "gpu" and opts.quick and opts.allow_cpu else (opts.suite, opts.quick)
    sizes = dict(SIZES[key])
    for key in (
        "preset",
        "layers",
        "vision_layers",
        "batch",
        "seq",
        "image_side",
        "rounds",
        "max_new_tokens",
        "budget_s",
    ):
        value = getattr(opts, key)
        if value is not None:
            sizes[key] = value
    return sizes


def worker_env(suite: str, malloc: str = "keep") -> dict[str, str | None]:
    """Workers see one CPU device (a test run's simulated 8 would split nothing but confuse the report);
    on GPU, JAX allocates on demand so the torch worker beside it finds memory. Both frameworks' workers get
    the same allocator settings (`host_memory.process_env(malloc)`), set when each process starts."""
    flags = " ".join(
        f
        for f in os.environ.get("XLA_FLAGS", "").split()
        if not f.startswith("--xla_force_host_platform_device_count")
    )
    env: dict[str, str | None] = {
        "XLA_FLAGS": flags or None,
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    env.update(host_memory.process_env(malloc))
    if suite == "gpu":
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    else:
        env["JAX_PLATFORMS"] = "cpu"
    return env


def _section(fn, *args, **kwargs) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        out = fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - a failing section must not lose the others
        tb = traceback.format_exc()
        out = {
            "error": f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}",
            "traceback": tb[-4000:],
        }
    out["wall_s"] = time.perf_counter() - start
    return out


def environment() -> dict[str, Any]:
    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def run_suite(opts: Options, log=print) -> dict[str, Any]:
    """Runs the selected sections; returns the results dict (see report.py for its use)."""
    unknown = [n for n in opts.sections if n not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown sections {unknown}; known: {SECTIONS}")
    opts = dataclasses.replace(opts, malloc=host_memory.resolve_process_mode(opts.malloc))
    sizes = resolve_sizes(opts)
    deadline = Deadline(sizes["budget_s"])
    results: dict[str, Any] = {
        "meta": {
            "suite": opts.suite,
            "quick": opts.quick,
            "sizes": sizes,
            "options": dataclasses.asdict(opts),
            "environment": environment(),
        }
    }
    env = worker_env(opts.suite, opts.malloc)
    with tempfile.TemporaryDirectory(prefix="lingshu_bench_") as tmp:
        ctx = sections.Context(opts, sizes, env, tmp, deadline, log)
        try:
            results["meta"].update(ctx.prepare_model())
        except sections.NoGPUError as e:
            results["meta"].update(ctx.plan or {})
            results["meta"]["error"] = str(e)
            e.results = results
            raise
        for name in opts.sections:
            if name == "peak" and "train" in opts.sections:
                continue  # measured in the train workers, before the first step
            log(f"[bench] {name} ... ({deadline.left():.0f} s of the budget left)")
            results[name] = _section(getattr(ctx, name))
            if "error" in results[name]:
                log(f"[bench] {name} failed: {results[name]['error']}")
            if ctx.peak_result is not None:
                results["peak"] = ctx.peak_result
    results["meta"]["environment"]["load_avg_end"] = (
        list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    )
    results["meta"]["wall_s"] = time.perf_counter() - deadline.start
    return results


__all__ = ["Options", "SECTIONS", "SIZES", "run_suite", "resolve_sizes", "summarize"]
