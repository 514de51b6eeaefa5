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
import time


def _progress_bar(total_bytes: int, desc: str):
    from tqdm import tqdm

    bar = tqdm(
        total=total_bytes,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=desc,
        file=sys.stderr,
        mininterval=0.5,
    )
    return bar, (lambda key, nbytes: bar.update(nbytes))


def hf_to_jax_main(args) -> dict:
    from lingshu_jax.convert.hf_to_jax import hf_to_jax
    from lingshu_jax.convert.safetensors_io import SafetensorsReader

    total = sum(t.nbytes for t in SafetensorsReader(args.hf_dir).entries.values())
    bar, progress = _progress_bar(total, "hf-to-jax")
    start = time.perf_counter()
    try:
        hf_to_jax(
            args.hf_dir,
            out_dir=args.out,
            dtype=args.dtype,
            return_params=False,
            overwrite=args.overwrite,
            progress=progress,
        )
    finally:
        bar.close()
    return {"bytes_read": total, "seconds": time.perf_counter() - start}


def jax_to_hf_main(args) -> dict:
    from lingshu_jax.convert import checkpoint as ckpt_lib
    from lingshu_jax.convert.jax_to_hf import jax_to_hf
    from lingshu_jax.convert.keymap import param_specs, tree_get
    from lingshu_jax.convert.safetensors_io import np_dtype

    cfg = ckpt_lib.config_from_checkpoint(args.checkpoint)
    itemsize = np_dtype(args.dtype).itemsize if args.dtype else None
    meta = ckpt_lib.leaf_metadata(args.checkpoint)
    total = sum(s.size * (itemsize or tree_get(meta, s.path).dtype.itemsize) for s in param_specs(cfg))
    bar, progress = _progress_bar(total, "jax-to-hf")
    start = time.perf_counter()
    try:
        files = jax_to_hf(
            args.checkpoint,
            cfg,
            args.out,
            source_hf_dir=args.source_hf_dir,
            dtype=args.dtype,
            max_shard_size=args.max_shard_size,
            overwrite=args.overwrite,
            progress=progress,
        )
    finally:
        bar.close()
    return {"bytes_written": total, "seconds": time.perf_counter() - start, "files": len(files)}


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
        stats = hf_to_jax_main(args) if args.command == "hf-to-jax" else jax_to_hf_main(args)
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
