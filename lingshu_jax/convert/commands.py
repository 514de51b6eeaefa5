"""The converter's command-line runs (`scripts/convert.py`): each direction with a progress bar and its
throughput figures. Both stream tensor by tensor (host memory ~ one parameter leaf).
"""

from __future__ import annotations

import sys
import time


def progress_bar(total_bytes: int, desc: str):
    """A tqdm byte counter on stderr and the `progress(key, nbytes)` callback the converters call."""
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


def run_hf_to_jax(args) -> dict:
    """`convert.py hf-to-jax`: args.hf_dir -> args.out (dtype, overwrite); -> {"bytes_read", "seconds"}."""
    from lingshu_jax.convert.hf_to_jax import hf_to_jax
    from lingshu_jax.convert.safetensors_io import SafetensorsReader

    total = sum(t.nbytes for t in SafetensorsReader(args.hf_dir).entries.values())
    bar, progress = progress_bar(total, "hf-to-jax")
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


def run_jax_to_hf(args) -> dict:
    """`convert.py jax-to-hf`: args.checkpoint -> args.out; -> {"bytes_written", "seconds", "files"}."""
    from lingshu_jax.convert import checkpoint as ckpt_lib
    from lingshu_jax.convert.jax_to_hf import jax_to_hf
    from lingshu_jax.convert.keymap import param_specs, tree_get
    from lingshu_jax.convert.safetensors_io import np_dtype

    cfg = ckpt_lib.config_from_checkpoint(args.checkpoint)
    itemsize = np_dtype(args.dtype).itemsize if args.dtype else None
    meta = ckpt_lib.leaf_metadata(args.checkpoint)
    total = sum(s.size * (itemsize or tree_get(meta, s.path).dtype.itemsize) for s in param_specs(cfg))
    bar, progress = progress_bar(total, "jax-to-hf")
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
