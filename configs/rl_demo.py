"""The RL demo: GRPO on easy-VQA after the SFT demo's stage 3 (Lingshu: RL starts from stage 3), on a CPU.

  python scripts/train.py --config=configs/demo.py:stage=3 --workdir=runs/demo/stage3   (after stages 1, 2)
  python scripts/train_rl.py --config=configs/rl_demo.py --workdir=runs/demo/rl

Arguments: root (the SFT demo's root), steps, lr (the LLM's), lr_vit / lr_proj (the ViT's / merger's; 0 =
frozen, the default), warmup, seed (prompt order and sampling keys). Prompts are easy-VQA's training
questions in the SFT demo's own conversation form plus `REASONING_PROMPT`, the <think>/<answer> format stage 3
of the SFT demo teaches (as Lingshu's SFT does before its RL stage); 74% of them are yes/no before Lingshu's
downsampling to ~5%. Rewards: Lingshu's strict format x0.5 + accuracy x1.0.
GRPO trains the LLM only: the demo's image features survive SFT only at slow ViT / merger rates
(docs/rl_cpu.md section 6), and GRPO at 3e-4 on every parameter lost part of the colour reading (section 7).
Measured (docs/rl_cpu.md section 9), with the defaults (60 steps, LLM lr 5e-4 after a 10-update warmup, k3
KL 1e-2): sampled accuracy reward +0.204, +0.201, +0.217 (seeds 0, 1, 2; first vs last fifth; section 8's
50 steps: +0.169, +0.096, +0.177), held-out greedy accuracy 0.460 -> 0.625, 0.480 -> 0.655, 0.485 -> 0.630,
format reward 0.93-0.94 -> 0.99. The demo model's image tokens carry colour but not shape (a linear probe
reads shape at 0.43, majority 0.35), so GRPO answers every shape question "circle" and the sampled accuracy
levels off near 0.5-0.6.
"""

import os

from configs.common import adamw, base_config, parse_arg
from configs.lingshu import rl as lingshu_rl
from lingshu_jax.demo import REASONING_PROMPT, easy_vqa_root
from lingshu_jax.model.config import preset_config_dict
from lingshu_jax.rl.rewards import LINGSHU_REWARDS
from lingshu_jax.train.optimizer import LINGSHU_REGEX


def get_config(arg=None):
    a = parse_arg(arg, root="runs/demo", steps=60, lr=5e-4, lr_vit=0.0, lr_proj=0.0, warmup=10, seed=0)
    c = base_config()
    c.seed = a.seed  # prompt order and sampling keys
    rl_data = os.path.join(a.root, "rl_data")
    c.prepare_demo_data = rl_data  # writes easy_vqa_rl.jsonl there first
    c.model = preset_config_dict("demo")
    c.init_from = os.path.join(a.root, "stage3")
    c.train.total_steps = a.steps
    c.train.log_every = 1
    c.train.log_samples = 4  # responses per log step written to samples.jsonl
    c.train.checkpoint_every = 10
    c.data = {
        "paths": (os.path.join(rl_data, "easy_vqa_rl.jsonl"),),
        "root": easy_vqa_root(),
        "yes_no_keep": 0.05,
        "format_prompt": REASONING_PROMPT,  # the format stage 3 of the SFT demo teaches
        "shuffle": True,
        "filter_overlong": False,
    }
    c.heldout = {  # easy-VQA's test questions (images never trained on), greedy, before and after GRPO
        "paths": (os.path.join(rl_data, "easy_vqa_rl_test.jsonl"),),
        "root": easy_vqa_root(),
        "yes_no_keep": 0.05,
        "format_prompt": REASONING_PROMPT,
        "num_prompts": 200,
        "max_new_tokens": 32,
    }
    c.rl = lingshu_rl.grpo_config(  # Lingshu's GRPO recipe (temperature 1, k3 KL, clip 0.2) at CPU size
        group_size=8,
        rollout_prompts=16,
        mini_batch_prompts=8,
        micro_batch_rows=16,
        max_new_tokens=32,  # <think>colour shape</think><answer>answer</answer> is about 30 tokens
        max_prompt_tokens=0,
        rows_per_generate=128,
        kl_coef=1e-2,  # with the warmup: keeps every seed near the stage-3 model (1e-3: seed 0 drifts)
        prompt_bucket=32,
        response_bucket=32,
        patch_bucket=64,
    )
    c.rewards = LINGSHU_REWARDS
    c.reward_modules = ()
    # warmup counts optimizer updates (2 a step); a learning rate of 0 freezes its group
    sched = lambda lr: {"type": "constant", "peak": lr, "warmup_steps": a.warmup} if lr else None
    c.optim = adamw(
        (
            (LINGSHU_REGEX["merger"], sched(a.lr_proj), "merger"),
            (LINGSHU_REGEX["vit"], sched(a.lr_vit), "vit"),
            (LINGSHU_REGEX["llm"], sched(a.lr), "llm"),
        ),
        b2=0.98,
    )
    return c
