"""Lingshu-RL (stage 4, paper section 3 / Table 5): GRPO from the stage-3 checkpoint.

    python scripts/train_rl.py --config=configs/lingshu/rl.py:size=7b,data_root=/data/lingshu_rl \
        --config.init_from=runs/stage3 --workdir=runs/rl

Recipe: rollout batch 512 prompts, global (mini-)batch 128 prompts (4 updates per rollout), 16 samples per
prompt at temperature 1.0, KL coefficient 1e-3 (k3 to the frozen stage-3 model), max length 4096 (prompt
2048 + response 2048, EasyR1's split), learning rate 1e-6 (constant, AdamW, clip 1.0, EasyR1's defaults
for the rest); reward = strict format x0.5 + accuracy x1.0; ~100K medical VQA prompts with closed answers,
yes/no downsampled to ~5%. Prompts: `{data_root}/medical_vqa_rl.jsonl` (see lingshu_jax/rl/data.py for
the record format) with images under `{data_root}/images`.
A custom verifier: register it (`lingshu_jax.rl.register_reward("name")`) in a module listed in
`reward_modules`, and name it in `rewards`.
"""

import dataclasses
import math
import os

import ml_collections

from configs.common import adamw, base_config, parse_arg
from configs.lingshu.recipe import lingshu_model, slice_plan
from lingshu_jax.rl.data import DEFAULT_FORMAT_PROMPT
from lingshu_jax.rl.rewards import LINGSHU_REWARDS
from lingshu_jax.rl.trainer import GRPOSettings

ROLLOUT_PROMPTS = GRPOSettings.rollout_prompts  # 512
MAX_PIXELS = 1_003_520  # images of RL prompts: at most 1280 tokens


def grpo_config(**overrides) -> ml_collections.ConfigDict:
    """`config.rl`: the GRPO defaults (their one source is `lingshu_jax.rl.trainer.GRPOSettings`) with
    `overrides`; fields whose default is None become float placeholders, so `--config.rl.X=` can set them."""
    values = dataclasses.asdict(GRPOSettings())
    unknown = sorted(set(overrides) - set(values))
    if unknown:
        raise ValueError(f"grpo_config: unknown GRPO settings {unknown}; known: {sorted(values)}")
    values.update(overrides)
    return ml_collections.ConfigDict(
        {k: ml_collections.config_dict.placeholder(float) if v is None else v for k, v in values.items()}
    )


def get_config(arg=None):
    a = parse_arg(
        arg,
        size="7b",
        data_root="/data/lingshu_rl",
        steps=0,
        init_from="",
        prompts=100_000,
        lr=1e-6,
        slice="",
    )
    c = base_config()
    c.model = lingshu_model(a.size)
    plan = slice_plan(a.size, a.slice)  # the SFT recipe's slices: 7b v5p-16 / v6e-16, 32b v5p-128 / v6e-64
    c.slice = plan["topology"]
    c.mesh.update({"data": 1, "fsdp": 1, "tensor": 1, "sequence": 1, **plan["mesh"]})
    # Splash attention, as in SFT: generation and the update lay each batch's vision stream out one chunk
    # per device (a device's rows' images in its own chunk), so no vision buffer grows with the whole
    # stream and no span is needed. Images are capped at `data.max_pixels` (1,003,520 px = 1280 tokens,
    # transformers' class default) so that a prompt with its image fits `rl.max_prompt_tokens`.
    c.model.attention_impl = "splash"
    c.model.vision_attention_span = None
    c.init_from = a.init_from  # the stage-3 workdir (its final/ checkpoint) or an HF Lingshu directory
    c.train.total_steps = a.steps or math.ceil(a.prompts / ROLLOUT_PROMPTS)  # one epoch over the prompts
    c.train.log_every = 1
    c.train.log_samples = 4  # responses per log step written to samples.jsonl
    c.train.checkpoint_every = 10
    c.train.keep_checkpoints = 3
    c.data = {
        "paths": (os.path.join(a.data_root, "medical_vqa_rl.jsonl"),),
        "root": os.path.join(a.data_root, "images"),
        "yes_no_keep": 0.05,
        "format_prompt": DEFAULT_FORMAT_PROMPT,
        "shuffle": True,
        "filter_overlong": True,
        "max_pixels": MAX_PIXELS,
    }
    # GRPOSettings' defaults are Lingshu's recipe (16 samples at temperature 1, k3 KL 1e-3, clip 0.2, ...).
    # Per chip, on every slice: one row of each log-prob / update micro-batch (as SFT) and two rows of each
    # generation call (v5p-16: one prompt group of 16). Fit report: `python scripts/aot.py --config=<this
    # file>` (docs/tpu.md, "GRPO").
    c.rl = grpo_config(
        micro_batch_rows=plan["chips"],
        rows_per_generate=2 * plan["chips"],
        prompt_bucket=128,
        response_bucket=128,
        patch_bucket=1024,
    )
    c.rewards = LINGSHU_REWARDS  # ((name, weight), ...): strict format x0.5 + accuracy x1.0
    c.reward_modules = ()  # modules imported first, so that their register_reward() plugins exist
    c.optim = adamw(((".*", {"type": "constant", "peak": a.lr}, "policy"),), weight_decay=1e-2)
    return c
