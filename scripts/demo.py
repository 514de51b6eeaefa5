"""The main job on its embedded default: Lingshu stages 1 -> 2 -> 3 on a tiny model, then HF export.

  python scripts/demo.py [--root runs/demo] [--steps 0]

Each stage is exactly `scripts/train.py --config=configs/demo.py:stage=N,root=ROOT --workdir=ROOT/stageN`;
rerunning resumes (finished stages are skipped).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

flags.DEFINE_string("root", "runs/demo", "Where the data, the stage workdirs and the HF export go.")
flags.DEFINE_integer("steps", 0, "Steps per stage (0 = the demo defaults: 60, 120, 300).")


def main(argv):
    del argv
    from configs import demo
    from lingshu_jax import host_memory, logs

    host_memory.configure("auto")  # keeps freed memory on a CPU host, before JAX starts its threads
    logs.setup()
    from lingshu_jax.train.trainer import train

    root = flags.FLAGS.root
    for stage in (1, 2, 3):
        workdir = os.path.join(root, f"stage{stage}")
        if os.path.exists(os.path.join(workdir, "final", "lingshu_checkpoint.json")):
            print(f"stage {stage}: already finished ({workdir})")
            continue
        print(f"stage {stage}: training -> {workdir}")
        train(demo.get_config(f"stage={stage},root={root},steps={flags.FLAGS.steps}"), workdir)
    rows = [json.loads(line) for line in open(os.path.join(root, "stage3", "metrics.jsonl"))]
    evals = [r for r in rows if "eval/accuracy" in r]
    print("eval accuracy by step:", ", ".join(f"{r['step']}: {r['eval/accuracy']:.3f}" for r in evals))
    print(
        f"Hugging Face export: {os.path.join(root, 'hf_export')}   curves: {os.path.join(root, 'stage3', 'curves.png')}"
    )


if __name__ == "__main__":
    app.run(main)
