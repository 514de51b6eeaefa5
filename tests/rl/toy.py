"""A verifiable toy task for the RL trainer tests: the colour of an image decides a multiple-choice letter.

Every prompt asks "Colour? A. red B. green C. blue D. yellow" over a small solid-colour image (with noise,
so no two images are equal); the answer is the colour's letter. Only the image tells it.

Warm start (Lingshu's RL starts from its stage-3 SFT model): a brief run of the SFT trainer itself on the
same prompts, with responses in the reasoning format "<think>{colour}</think>\\boxed{X}" whose letter X is
right only half the time (else drawn at random). The SFT policy thus writes the format and names the
colour, but picks the letter with accuracy well below 1 (about 0.35 under sampling); what it gains beyond
that comes from GRPO and the accuracy reward. (From fully random letters GRPO learns too, but needs about
twice the steps: too slow for a CPU test.)
"""

import json
import os

import numpy as np
from PIL import Image

from configs.common import adamw, base_config
from lingshu_jax.demo import write_demo_assets
from lingshu_jax.model.config import preset_config_dict
from lingshu_jax.rl.data import parse_record

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}
LETTERS = "ABCD"
FORMAT_PROMPT = "Think in <think> </think>, answer in \\boxed{}."


def write_images(root: str, per_colour: int, seed: int = 0) -> list[tuple[str, int]]:
    """Solid 28x28 images with noise: [(relative path, colour index)]."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    out = []
    for c, rgb in enumerate(COLOURS.values()):
        for k in range(per_colour):
            pix = np.clip(np.array(rgb) + rng.integers(-20, 21, (28, 28, 3)), 0, 255).astype(np.uint8)
            rel = f"images/{c}_{k}.png"
            Image.fromarray(pix).save(os.path.join(root, rel))
            out.append((rel, c))
    return out


def rl_record(image: str, colour: int) -> dict:
    """A record in the "messages" layout (a short prompt: the test is CPU-bound). The options are in the
    text and the type is "closed" (exact match on the letter): the multiple-choice scorer's fallback to the
    most similar option would credit a broken response one time in four, a noisy reward for a tiny model."""
    return {
        "messages": [{"role": "user", "content": "<image>Colour? A. red B. green C. blue D. yellow"}],
        "images": [image],
        "answer": LETTERS[colour],
        "question_type": "closed",
    }


def write_toy(root: str, per_colour: int = 8, seed: int = 0, label_noise_free: float = 0.5) -> dict[str, str]:
    """RL prompts, SFT warm-start conversations (random letters) and tokenizer/processor assets."""
    images = write_images(root, per_colour, seed)
    rng = np.random.default_rng(seed + 1)
    paths = {
        "rl": os.path.join(root, "rl.jsonl"),
        "sft": os.path.join(root, "sft.jsonl"),
        "assets": write_demo_assets(os.path.join(root, "assets")),
        "root": root,
    }
    with open(paths["rl"], "w") as f:
        f.writelines(json.dumps(rl_record(im, c)) + "\n" for im, c in images)
    with open(paths["sft"], "w") as f:
        for _ in range(4):
            for im, c in images:
                prompt = parse_record(rl_record(im, c), "toy", root, FORMAT_PROMPT)
                letter = LETTERS[c] if rng.random() < label_noise_free else LETTERS[rng.integers(4)]
                answer = f"<think>{list(COLOURS)[c]}</think>\\boxed{{{letter}}}"
                f.write(
                    json.dumps({"messages": [*prompt.messages, {"role": "assistant", "content": answer}]})
                    + "\n"
                )
    return paths


def sft_config(paths: dict, steps: int, preset: str = "tiny", lr: float = 5e-3):
    """The SFT trainer's config for the format warm start (random init)."""
    c = base_config()
    c.model = preset_config_dict(preset)
    c.assets_dir = paths["assets"]
    c.train.total_steps = steps
    c.train.log_every = 10
    c.train.checkpoint_every = steps
    c.train.progress = False
    c.data = {
        "sources": [{"name": "toy_sft", "paths": [paths["sft"]], "root": paths["root"]}],
        "seq_len": 112,
        "batch_size": 16,
        "patch_budget": 512,
        "packing": False,
        "epochs": None,
        "worker_count": 0,
    }
    schedule = {"type": "cosine", "peak": lr, "warmup_steps": 5, "total_steps": steps, "end_ratio": 0.1}
    c.optim = adamw([(".*", schedule, "all")], b2=0.98)
    c.eval = {"every": 0}
    return c


def rl_config(paths: dict, init_from: str, steps: int, **rl):
    """The RL trainer's config for the toy task (high learning rate, short responses)."""
    from configs import rl_demo

    c = rl_demo.get_config(f"steps={steps}")
    c.prepare_demo_data = ""
    c.model = preset_config_dict("tiny")
    c.init_from = init_from
    c.train.progress = False
    c.train.checkpoint_every = steps
    c.train.log_samples = 8
    c.data = {
        "paths": (paths["rl"],),
        "root": paths["root"],
        "yes_no_keep": 1.0,
        "format_prompt": FORMAT_PROMPT,
        "shuffle": True,
        "filter_overlong": False,
    }
    c.rl.update(
        {
            "group_size": 8,
            "rollout_prompts": 8,
            "mini_batch_prompts": 4,
            "micro_batch_rows": 32,
            "epochs": 2,
            "max_new_tokens": 24,
            "prompt_bucket": 32,
            "response_bucket": 24,
            "patch_bucket": 64,
            "kl_coef": 1e-3,
            "check_logprobs": True,
            **rl,
        }
    )
    c.optim.groups = [(".*", {"type": "constant", "peak": 2e-3, "warmup_steps": 6}, "policy")]
    return c
