"""Lingshu's SFT recipe (paper section 3, Table 5) as one builder; stage files pick the stage.

All stages: AdamW, cosine schedule, 100 warmup steps, max length 8192, per-device batch 1, gradient
accumulation 8, bf16 compute. Stage 1 trains ViT (2e-6) + projector (1e-5) with the LLM frozen; stages
2-3 train everything (LLM 1e-5, ViT 2e-6, projector 1e-5); packing only in stage 3 (2 epochs).
Data paths are `{data_root}/<name>.jsonl` (HF/Qwen `messages` or LLaMA-Factory/ShareGPT format) with
images under `{data_root}/images`; give your own mixture with
`--config.data.sources_file=mix.json` (or .yaml; see README).
"""

import os

from configs.common import adamw, base_config, parse_arg
from lingshu_jax.data.config import data_section
from lingshu_jax.model.config import preset_config_dict
from lingshu_jax.train.optimizer import lingshu_groups

SIZES = {"7b": "lingshu-7b", "32b": "lingshu-32b"}
DATA = {
    1: {"pmc_oa": 1.0, "roco": 1.0},
    2: {
        "rocov2": 1.0,
        "llava_med": 1.0,
        "quilt_llava": 1.0,
        "pubmedvision": 1.0,
        "mimic_cxr": 1.0,
        "fairvlmed": 1.0,
        "medicat": 1.0,
        "medpix2": 1.0,
        "synthetic_long_captions": 1.0,
        "llava15_captions": 1.0,
        "pixmo": 1.0,
    },
    3: {
        "medical_vqa": 3.0,
        "medical_text_qa": 1.0,
        "medical_cot": 1.0,
        "general_vqa": 1.0,
        "general_text": 1.0,
    },
}
EPOCHS = {1: 1, 2: 1, 3: 2}


def lingshu_model(size: str):
    """`config.model` of a full-size Lingshu (bf16 compute, fp32 parameters, full remat), SFT and RL alike."""
    if size not in SIZES:
        raise ValueError(f"size={size!r}: expected one of {sorted(SIZES)}")
    return preset_config_dict(
        SIZES[size],
        dtype="bfloat16",
        param_dtype="float32",
        remat_policy="full",
        vision_remat_policy="full",
    )


def stage_config(stage: int, arg=None):
    a = parse_arg(arg, size="7b", data_root="/data/lingshu", steps=10000, init_from="", devices_per_host=8)
    c = base_config()
    c.model = lingshu_model(a.size)
    c.init_from = a.init_from  # stage 1: the Qwen2.5-VL / Lingshu HF dir; later: the previous stage's workdir
    c.train.total_steps = a.steps
    c.train.grad_accum = 8
    c.train.log_every = 10
    c.train.checkpoint_every = 500
    c.train.keep_checkpoints = 3
    c.mesh.fsdp = -1
    # Every data option is settable: --config.data.on_error=error, --config.data.sources_file=mix.json
    c.data = data_section({
        "sources": [
            {
                "name": n,
                "paths": [os.path.join(a.data_root, f"{n}.jsonl")],
                "root": os.path.join(a.data_root, "images"),
                "weight": w,
            }
            for n, w in DATA[stage].items()
        ],
        "seq_len": 8192,
        "batch_size": 1,
        "patch_budget": 16384,
        "packing": stage == 3,
        "epochs": EPOCHS[stage],
        "worker_count": 8,
        "prefetch": 2,
    })
    c.optim = adamw(
        lingshu_groups(stage, lr_llm=1e-5, lr_vit=2e-6, lr_proj=1e-5, warmup_steps=100, total_steps=a.steps)
    )
    c.eval = {"every": 0}
    return c
