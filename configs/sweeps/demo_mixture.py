"""A data-mixture ablation on the demo's instruction stage (as the paper ablates its data mixtures): the
weight of the DICOM (CT/MR caption) source against easy-VQA's 50, from none to dominant; held-out easy-VQA
accuracy and loss per run.

python scripts/sweep.py --sweep=configs/sweeps/demo_mixture.py --root=runs/sweep_mix \
    [--parallel=2 --devices_per_run=1]

Each run trains stage 3 from scratch for 80 steps (init_from "": no earlier stage, a stage toggle) so runs are
independent and minutes long on a CPU.
"""


def get_sweep(root: str):
    common = {"init_from": "", "export_hf": "", "eval.every": 40, "train.log_every": 10}
    return [
        {
            "name": f"dicom_w{w:g}",
            "config": f"configs/demo.py:stage=3,steps=80,root={root},w_vqa=50,w_dicom={w}",
            "overrides": dict(common),
        }
        for w in (0.0, 5.0, 50.0)
    ]
