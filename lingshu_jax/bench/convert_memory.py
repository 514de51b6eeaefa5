"""Peak host memory and throughput of the checkpoint converter (`scripts/convert.py`) on a random >= 2 GB
Qwen2.5-VL checkpoint (command line: `scripts/bench_convert.py`).

Writes a random HF checkpoint straight from numpy (no torch model), then runs `convert.py hf-to-jax` and
`convert.py jax-to-hf` as subprocesses and records each one's peak RSS (`/usr/bin/time -f %M` when
present, else psutil polling of the process tree every 10 ms). The bound is
  largest tensor + 1 GiB,
where "largest tensor" is the largest leaf of our tree (a stacked [L, ...] leaf is materialised whole by
the Orbax writer; the largest single HF tensor is reported too). The import baseline (python + jax +
orbax + safetensors, measured the same way) is reported so peak - baseline is visible.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import psutil

GIB = 1 << 30


def bench_config(size: str):
    from lingshu_jax.model.config import (
        QWEN_SPECIAL_TOKENS,
        ModelConfig,
        TextConfig,
        VisionConfig,
        qwen_special_token_ids,
    )

    if size == "2gb":  # ~2.2 GB fp32: 552M parameters
        text = TextConfig(
            vocab_size=32768,
            hidden_size=2048,
            intermediate_size=5632,
            num_hidden_layers=6,
            num_attention_heads=16,
            num_key_value_heads=2,
            mrope_section=(16, 24, 24),
        )
        vision = VisionConfig(
            depth=8,
            hidden_size=1280,
            intermediate_size=3420,
            num_heads=16,
            out_hidden_size=2048,
            fullatt_block_indexes=(3, 7),
        )
    elif size == "200mb":  # ~195 MB fp32, for a quick run
        text = TextConfig(
            vocab_size=32768,
            hidden_size=512,
            intermediate_size=1408,
            num_hidden_layers=4,
            num_attention_heads=8,
            num_key_value_heads=2,
            mrope_section=(8, 12, 12),
        )
        vision = VisionConfig(
            depth=2,
            hidden_size=256,
            intermediate_size=688,
            num_heads=4,
            out_hidden_size=512,
            fullatt_block_indexes=(1,),
        )
    else:
        raise ValueError(f"--size {size!r}: expected 2gb or 200mb")
    return ModelConfig(vision=vision, text=text, **qwen_special_token_ids(32768 - QWEN_SPECIAL_TOKENS))


def measure(cmd: list[str]) -> dict:
    """Runs cmd; -> {"rc", "peak_rss", "method", "seconds", "stdout"}."""
    timer = os.path.exists("/usr/bin/time")
    full = (["/usr/bin/time", "-f", "MAXRSS_KB %M"] if timer else []) + cmd
    start = time.perf_counter()
    proc = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ps, polled = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            procs = [ps] + ps.children(recursive=True)
            polled = max(polled, sum(p.memory_info().rss for p in procs))
        except psutil.Error:
            pass
        time.sleep(0.01)
    out, err = proc.communicate()
    seconds = time.perf_counter() - start
    peak, method = polled, "psutil-poll-10ms"
    for line in err.splitlines():
        if line.startswith("MAXRSS_KB "):
            peak, method = int(line.split()[1]) * 1024, "/usr/bin/time %M"
    if proc.returncode:
        sys.stderr.write(err[-4000:])
    return {
        "rc": proc.returncode,
        "peak_rss": peak,
        "polled_rss": polled,
        "method": method,
        "seconds": seconds,
        "stdout": out,
    }


def _last_json(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def run(
    convert_cmd: list[str],
    size: str = "2gb",
    work_dir: str | None = None,
    keep: bool = False,
    out: str | None = None,
) -> dict:
    """Builds the random checkpoint, converts it both ways with `convert_cmd` (the argv prefix of
    `scripts/convert.py`), prints and returns the report; report[direction]["pass"] says whether the peak
    RSS stayed under the bound."""
    args = argparse.Namespace(size=size, work_dir=work_dir, keep=keep, out=out)
    from lingshu_jax.convert.random_checkpoint import write_random_hf_checkpoint

    work = args.work_dir or tempfile.mkdtemp(prefix="bench_convert_")
    src, ckpt, back = (os.path.join(work, n) for n in ("hf", "jax", "hf_back"))
    t0 = time.perf_counter()
    info = write_random_hf_checkpoint(bench_config(args.size), src, "float32")
    build_s = time.perf_counter() - t0
    baseline = measure(
        [
            sys.executable,
            "-c",
            "import jax, orbax.checkpoint, safetensors, lingshu_jax.convert; jax.devices()",
        ]
    )
    report = {
        "size": args.size,
        "checkpoint_bytes": info["bytes"],
        "build_seconds": build_s,
        "largest_hf_tensor": info["largest_hf_tensor"],
        "largest_leaf": info["largest_leaf"],
        "import_baseline_rss": baseline["peak_rss"],
        "bound": info["largest_leaf"] + GIB,
    }
    for name, cmd in (
        ("hf_to_jax", ["hf-to-jax", "--hf_dir", src, "--out", ckpt, "--overwrite"]),
        ("jax_to_hf", ["jax-to-hf", "--checkpoint", ckpt, "--out", back, "--overwrite"]),
    ):
        r = measure(list(convert_cmd) + cmd)
        stats = _last_json(r["stdout"])
        report[name] = {
            "rc": r["rc"],
            "peak_rss": r["peak_rss"],
            "rss_method": r["method"],
            "polled_rss": r["polled_rss"],
            "peak_minus_baseline": r["peak_rss"] - baseline["peak_rss"],
            "pass": r["rc"] == 0 and r["peak_rss"] <= report["bound"],
            "mb_per_s": stats.get("mb_per_s"),
            "convert_seconds": stats.get("seconds"),
            "process_seconds": r["seconds"],
        }
    if not args.keep and not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    mib = lambda b: f"{b / 2**20:.0f} MiB"
    for name in ("hf_to_jax", "jax_to_hf"):
        r = report[name]
        print(
            f"{name}: checkpoint {info['bytes'] / 1e9:.2f} GB, peak RSS {mib(r['peak_rss'])} "
            f"(import baseline {mib(baseline['peak_rss'])}), largest leaf {mib(info['largest_leaf'])} "
            f"(largest HF tensor {mib(info['largest_hf_tensor'])}), bound {mib(report['bound'])}: "
            f"{'PASS' if r['pass'] else 'FAIL'}, {r['mb_per_s'] or 0:.0f} MB/s"
        )
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return report
