#!/usr/bin/env python
"""Convert Qwen2.5-VL / Lingshu checkpoints between Hugging Face safetensors and our Orbax layout.

  python scripts/convert.py hf-to-jax --hf_dir SRC --out DST [--dtype bfloat16|float32|float16]
  python scripts/convert.py jax-to-hf --checkpoint DST --out HF2 [--source_hf_dir SRC] [--dtype ...]
                                      [--max_shard_size 5000000000]

Both directions stream tensor by tensor (host memory ~ one parameter leaf); see lingshu_jax/convert.
"""

from __future__ import annotations

import argparse
import json
import sys

from lingshu_jax.convert.commands import run_hf_to_jax, run_jax_to_hf


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("hf-to-jax", help="HF safetensors directory -> Orbax checkpoint directory")
    a.add_argument("--hf_dir", required=True)
    a.add_argument("--out", required=True)
    b = sub.add_parser("jax-to-hf", help="Orbax checkpoint directory -> HF safetensors directory")
    b.add_argument("--checkpoint", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--source_hf_dir", default=None, help="copy tokenizer/processor files from here")
    b.add_argument("--max_shard_size", type=int, default=5 * 10**9, help="bytes per safetensors shard")
    for x in (a, b):
        x.add_argument(
            "--dtype",
            choices=("bfloat16", "float32", "float16"),
            default=None,
            help="storage dtype (default: keep the source's)",
        )
        x.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        stats = run_hf_to_jax(args) if args.command == "hf-to-jax" else run_jax_to_hf(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    nbytes = stats.get("bytes_read", stats.get("bytes_written", 0))
    stats["mb_per_s"] = nbytes / 1e6 / max(stats["seconds"], 1e-9)
    print(
        f"{args.command}: {nbytes / 1e6:.1f} MB in {stats['seconds']:.1f} s = {stats['mb_per_s']:.1f} MB/s "
        f"-> {args.out}"
    )
    print(json.dumps({"command": args.command, **stats}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
