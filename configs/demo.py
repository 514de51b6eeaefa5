"""The embedded demo: a tiny Lingshu-shaped model on easy-VQA + pydicom's CT/MR slices, on a CPU.

  python scripts/train.py --config=configs/demo.py:stage=1 --workdir=runs/demo/stage1
  python scripts/train.py --config=configs/demo.py:stage=2 --workdir=runs/demo/stage2   (inits from stage1)
  python scripts/train.py --config=configs/demo.py:stage=3 --workdir=runs/demo/stage3   (inits from stage2)

Arguments: stage (1|2|3), root (where stage workdirs and the demo data live), steps (0 = the stage default),
lr (peak LLM learning rate), lr_vit / lr_proj (ViT / merger learning rates), w_vqa / w_dicom (mixture weights
of the easy-VQA source and the DICOM source; 0 drops a source), w_reason (stage 3: weight of the easy-VQA
questions in Lingshu's <think>/<answer> reasoning format, which the RL demo asks for), model (a preset name),
stage1_llm (stage 1 also trains the LLM; false = Lingshu's stage 1, LLM frozen).
The stages follow Lingshu's recipe (1: alignment on captions; 2: all parameters; 3: instruction tuning with
packing), with three changes, measured together, for a model trained from scratch in minutes (docs/rl_cpu.md
section 6):
- stage 1 trains the LLM too: Lingshu freezes a *pretrained* LLM; a frozen *random* LLM made the ViT/merger
  learn one image-independent prefix (merged-token norm 0.6 -> 12, colour separability of the image tokens
  0.75 -> 0.30) and the later stages never read the image;
- the ViT and merger learn slowly (1e-4 against the LLM's 2e-3), so their random-init features, which already
  separate the colours, are not collapsed while the LLM learns the text prior;
- the images are upscaled to 112x112 (`lingshu_jax.demo.DEMO_IMAGE_PIXELS`: 16 merged tokens): at 56x56 the 4
  mostly-background tokens were still not read after 400 steps with the two changes above;
- stage 1 runs 400 steps (was 60).
"""

import os

from configs.common import base_config, parse_arg
from lingshu_jax.data.config import data_section
from lingshu_jax.demo import easy_vqa_root
from lingshu_jax.model.config import preset_config_dict
from lingshu_jax.train.optimizer import lingshu_groups

STEPS = {1: 400, 2: 120, 3: 300}


def get_config(arg=None):
    a = parse_arg(
        arg,
        stage=3,
        root="runs/demo",
        steps=0,
        lr=2e-3,
        w_vqa=50.0,
        w_dicom=1.0,
        w_reason=50.0,
        model="demo",
        lr_vit=1e-4,
        lr_proj=1e-4,
        stage1_llm=True,
    )
    c = base_config()
    data_dir = os.path.join(a.root, "data")
    c.prepare_demo_data = data_dir
    c.assets_dir = os.path.join(data_dir, "assets")
    c.model = preset_config_dict(a.model)
    c.init_from = "" if a.stage == 1 else os.path.join(a.root, f"stage{a.stage - 1}")
    steps = a.steps or STEPS[a.stage]
    c.train.total_steps = steps
    c.train.log_every = 10
    c.train.checkpoint_every = 50
    sources = [
        {
            "name": "easy_vqa_captions",
            "paths": [os.path.join(data_dir, "captions.jsonl")],
            "root": easy_vqa_root(),
            "weight": a.w_vqa,
        },
        {
            "name": "dicom",
            "paths": [os.path.join(data_dir, "dicom.jsonl")],
            "root": os.path.join(data_dir, "dicom"),
            "weight": a.w_dicom,
        },
    ]
    if a.stage == 3:
        sources[0] = {
            "name": "easy_vqa",
            "paths": [os.path.join(data_dir, "vqa_train.jsonl")],
            "root": easy_vqa_root(),
            "weight": a.w_vqa,
        }
        sources.append(
            {
                "name": "easy_vqa_reasoning",
                "paths": [os.path.join(data_dir, "vqa_reasoning.jsonl")],
                "root": easy_vqa_root(),
                "weight": a.w_reason,
            }
        )
    sources = [src for src in sources if src["weight"] > 0]
    if not sources:
        raise ValueError(f"configs/demo.py: w_vqa={a.w_vqa}, w_dicom={a.w_dicom}: every source has weight 0")
    c.data = data_section(
        {  # every data option settable from the command line
            "sources": sources,
            "seq_len": 256 if a.stage == 3 else 96,
            "batch_size": 4 if a.stage == 3 else 16,
            "patch_budget": 512,
            "packing": a.stage == 3,
            "max_segments_per_row": 8,
            "epochs": None,
            "worker_count": 0,
        }
    )
    lrs = dict(lr_llm=a.lr, lr_vit=a.lr_vit, lr_proj=a.lr_proj)
    c.optim = {
        "name": "adamw",
        "b1": 0.9,
        "b2": 0.98,
        "eps": 1e-8,
        "weight_decay": 0.01,
        "clip_norm": 1.0,
        "groups": lingshu_groups(
            2 if a.stage == 1 and a.stage1_llm else a.stage,
            **lrs,
            warmup_steps=min(20, steps // 5),
            total_steps=steps,
        ),
    }
    c.eval = {
        "every": 100 if a.stage == 3 else 0,
        "max_batches": 1000,
        "data": {
            "sources": [
                {
                    "name": "easy_vqa_eval",
                    "paths": [os.path.join(data_dir, "vqa_eval.jsonl")],
                    "root": easy_vqa_root(),
                }
            ],
            "seq_len": 96,
            "batch_size": 50,
            "patch_budget": 1024,
            "epochs": 1,
            "shuffle": False,
        },
    }
    if a.stage == 3:
        c.export_hf = os.path.join(a.root, "hf_export")
    return c
