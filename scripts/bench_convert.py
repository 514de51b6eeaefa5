#!/usr/bin/env python
"""Peak host memory and throughput of `scripts/convert.py` on a random >= 2 GB Qwen2.5-VL checkpoint.

  python scripts/bench_convert.py [--size 2gb|200mb] [--work_dir DIR] [--keep] [--out results.json]

The measurement is `lingshu_jax.bench.convert_memory.run` (see there for the bound and how the peak RSS is
measured); exit status 1 when a direction exceeds the bound.
"""

from __future__ import annotations

import argparse
import os
import sys

from lingshu_jax.bench import convert_memory

CONVERT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "convert.py")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="2gb", choices=("2gb", "200mb"))
    p.add_argument("--work_dir", default=None)
    p.add_argument("--keep", action="store_true", help="keep the checkpoints")
    p.add_argument("--out", default=None, help="write the JSON report here too")
    args = p.parse_args(argv)
    report = convert_memory.run([sys.executable, CONVERT], args.size, args.work_dir, args.keep, args.out)
    return 0 if all(report[n]["pass"] for n in ("hf_to_jax", "jax_to_hf")) else 1


if __name__ == "__main__":
    sys.exit(main())
