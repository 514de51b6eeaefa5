"""AOT compile time of the train step for a preset at several depths (abstract inputs, no memory).

python scripts/compile_time.py --preset qwen2.5-vl-7b --layers 4,28 [--seq 2048 --patches 4096]
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="qwen2.5-vl-7b")
    ap.add_argument("--layers", default="4,28", help="decoder depths to compile (vision depth scales along)")
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--patches", type=int, default=4096)
    ap.add_argument("--dtype", default="bfloat16")
    args = ap.parse_args()
    import jax

    from lingshu_jax.model.config import preset
    from lingshu_jax.train.aot import compile_train_step, with_depth

    base = preset(args.preset, dtype=args.dtype, remat_policy="full", vision_remat_policy="full")
    print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}")
    for layers in (int(x) for x in args.layers.split(",")):
        vd = max(1, round(base.vision.depth * layers / base.text.num_hidden_layers))
        r = compile_train_step(with_depth(base, layers, vd), seq=args.seq, patches=args.patches)
        print(json.dumps({"preset": args.preset, **r}))


if __name__ == "__main__":
    main()
