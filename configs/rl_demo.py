"""The RL demo: GRPO on easy-VQA after the SFT demo's stage 3 (Lingshu: RL starts from stage 3), on a CPU.

  python scripts/train.py --config=configs/demo.py:stage=3 --workdir=runs/demo/stage3   (after stages 1, 2)
  python scripts/train_rl.py --config=configs/rl_demo.py --workdir=runs/demo/rl

Arguments: root (the SFT demo's root), steps, lr, warmup. Prompts are easy-VQA's training questions in the
SFT demo's own conversation form plus `REASONING_PROMPT`, the <think>/<answer> format stage 3 of the SFT
demo teaches (as Lingshu's SFT does before its RL stage); 74% of them are yes/no before Lingshu's
downsampling to ~5%. Rewards: Lingshu's strict format x0.5 + accuracy x1.0.
Measured (docs/rl_cpu.md section 5): the stage-3 model writes the format from the start (sampled format
reward 0.95-1.0), but its reasoning names colours and shapes at chance level (the image's own colour in 6
of 68 sampled answers to colour questions), and in 30 steps (13 min on 2 loaded cores) the sampled accuracy reward stays flat (0.22 -> 0.20, first vs last fifth;
held-out greedy accuracy 0.22 -> 0.30). This demo shows the wiring at CPU size; it does not learn here.
The learning check is the toy task of tests/rl (docs/rl_cpu.md section 1).
"""

import os

from configs.common import adamw, base_config, parse_arg
from configs.lingshu import rl as lingshu_rl
from lingshu_jax.demo import REASONING_PROMPT, easy_vqa_root
from lingshu_jax.model.config import preset_config_dict
from lingshu_jax.rl.rewards import LINGSHU_REWARDS


def get_config(arg=None):
    a = parse_arg(arg, root="runs/demo", steps=30, lr=3e-4, warmup=0, seed=0)
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
        prompt_bucket=32,
        response_bucket=32,
        patch_bucket=64,
    )
    c.rewards = LINGSHU_REWARDS
    c.reward_modules = ()
    c.optim = adamw(
        ((".*", {"type": "constant", "peak": a.lr, "warmup_steps": a.warmup}, "policy"),), b2=0.98
    )
    return c
