"""A 2x2 sweep on the demo's instruction stage: peak learning rate x weight decay.

python scripts/sweep.py --sweep=configs/sweeps/demo_lr.py --root=runs/sweep [--print_only]
"""


def get_sweep(root: str):
    base = f"configs/demo.py:stage=3,steps=80,root={root}"
    common = {"init_from": "", "export_hf": "", "eval.every": 40, "train.log_every": 10}
    runs = []
    for lr in (1e-3, 3e-3):
        for wd in (0.0, 0.1):
            runs.append(
                {
                    "name": f"lr{lr:g}_wd{wd:g}",
                    "config": f"{base},lr={lr}",
                    "overrides": {**common, "optim.weight_decay": wd},
                }
            )
    return runs
