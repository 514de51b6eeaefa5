"""Ours vs transformers, side by side in one run: training step, prefill, decode, data pipeline, memory, MFU.

  python scripts/benchmark.py --suite cpu --out /tmp/bench_cpu          # bench-100m, fp32, < 10 minutes
  python scripts/benchmark.py --suite cpu --quick                       # tiny preset, < 1 minute
  python scripts/benchmark.py --suite gpu --layers 4 --remat none       # 7B-shaped, bf16, cuDNN attention

Writes DIR/results.json (raw timings, medians, environment) and DIR/report.md (the table, also printed).
Exit status 2 for `--suite gpu` without a GPU (after printing the planned configuration).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lingshu_jax.bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
