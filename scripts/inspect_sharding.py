"""Parameter shardings of a preset on a (device-less) mesh, from eval_shape: no memory is allocated.

python scripts/inspect_sharding.py --preset qwen2.5-vl-7b --mesh fsdp=64,tensor=4 [--dtype bfloat16]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="qwen2.5-vl-7b")
    ap.add_argument(
        "--mesh", default="fsdp=64,tensor=4", help="axis=size,... over data, fsdp, tensor, sequence"
    )
    ap.add_argument("--dtype", default="float32", help="parameter dtype")
    args = ap.parse_args()
    from lingshu_jax import sharding
    from lingshu_jax.model.config import preset
    from lingshu_jax.model.vlm import abstract_params

    axes = {k: int(v) for k, v in (item.split("=") for item in args.mesh.split(","))}
    n = 1
    for v in axes.values():
        n *= v
    mesh = sharding.abstract_mesh(axes, n)
    rows = sharding.describe_shardings(
        abstract_params(preset(args.preset, param_dtype=args.dtype), boxed=True), mesh, sharding.DEFAULT_RULES
    )
    print(f"{args.preset} on mesh {dict(mesh.shape)} ({n} devices), params in {args.dtype}\n")
    print(f"{'parameter':<48} {'shape':<22} {'spec':<34} {'per device':>12}")
    for r in rows:
        spec = ", ".join(str(a) for a in r["spec"])
        print(f"{r['path']:<48} {str(r['shape']):<22} {spec:<34} {r['bytes_per_device'] / 2**20:>9.2f} MiB")
    total = sum(r["bytes"] for r in rows)
    per_dev = sum(r["bytes_per_device"] for r in rows)
    replicated = [r for r in rows if all(a is None for a in r["spec"])]
    print(
        f"\ntotal {total / 2**30:.2f} GiB; per device {per_dev / 2**20:.1f} MiB "
        f"(ideal {total / n / 2**20:.1f} MiB); fully replicated: {len(replicated)} tensors, "
        f"{sum(r['bytes'] for r in replicated) / 2**20:.2f} MiB (largest {max((r['bytes'] for r in replicated), default=0) / 2**10:.0f} KiB)"
    )


if __name__ == "__main__":
    main()
