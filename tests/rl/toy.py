"""A verifiable toy task for the RL trainer tests: the colour of an image decides a multiple-choice letter.

Every prompt is the same question, "What colour is the image?" with options A. red, B. green, C. blue,
D. yellow, over a small solid-colour image (a little noise, so no two images are equal). Only the image
tells the answer, so a policy can only gain accuracy by reading the vision inputs the way generation saw
them.

Warm start, as Lingshu's RL starts from stage 3: a brief SFT run (the SFT trainer itself) on the same
prompts teaches the reasoning *format* "<think>colour</think>\\boxed{X}" with a letter X drawn at random,
independent of the image. The SFT policy then writes the format (format reward ~1) but picks letters at
chance (accuracy ~0.25); everything above chance afterwards is learnt by GRPO from the accuracy reward.
"""

import json
import os

import numpy as np
from PIL import Image

from configs.common import base_config
from lingshu_jax.demo import write_demo_assets
from lingshu_jax.model.config import preset_config_dict
from lingshu_jax.rl.data import parse_record

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}
LETTERS = "ABCD"
FORMAT_PROMPT = "Think inside <think> </think> first."


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
    return {"question": "What colour is the image?", "images": [image], "answer": LETTERS[colour],
            "question_type": "multiple_choice", "options": list(COLOURS)}


def write_toy(root: str, per_colour: int = 8, seed: int = 0) -> dict[str, str]:
    """RL prompts, SFT warm-start conversations (random letters) and tokenizer/processor assets."""
    images = write_images(root, per_colour, seed)
    rng = np.random.default_rng(seed + 1)
    paths = {"rl": os.path.join(root, "rl.jsonl"), "sft": os.path.join(root, "sft.jsonl"),
             "assets": write_demo_assets(os.path.join(root, "assets")), "root": root}
    with open(paths["rl"], "w") as f:
        f.writelines(json.dumps(rl_record(im, c)) + "\n" for im, c in images)
    with open(paths["sft"], "w") as f:
        for _ in range(4):
            for im, c in images:
                prompt = parse_record(rl_record(im, c), "toy", root, FORMAT_PROMPT)
                answer = f"<think>colour</think>\\boxed{{{LETTERS[rng.integers(4)]}}}"
                f.write(json.dumps({"messages": [*prompt.messages, {"role": "assistant", "content": answer}]}) + "\n")
    return paths


def sft_config(paths: dict, steps: int, preset: str = "tiny"):
    """The SFT trainer's config for the format warm start (random init)."""
    c = base_config()
    c.model = preset_config_dict(preset)
    c.assets_dir = paths["assets"]
    c.train.total_steps = steps
    c.train.log_every = steps
    c.train.checkpoint_every = steps
    c.train.progress = False
    c.data = {"sources": [{"name": "toy_sft", "paths": [paths["sft"]], "root": paths["root"]}],
              "seq_len": 128, "batch_size": 16, "patch_budget": 512, "packing": False, "epochs": None,
              "worker_count": 0}
    c.optim = {"name": "adamw", "b1": 0.9, "b2": 0.98, "eps": 1e-8, "weight_decay": 0.0, "clip_norm": 1.0,
               "groups": [(".*", {"type": "cosine", "peak": 3e-3, "warmup_steps": 5, "total_steps": steps}, "all")]}
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
    c.data = {"paths": [paths["rl"]], "root": paths["root"], "yes_no_keep": 1.0, "format_prompt": FORMAT_PROMPT,
              "shuffle": True, "filter_overlong": False}
    c.rl.update({"group_size": 8, "rollout_prompts": 8, "mini_batch_prompts": 4, "micro_batch_rows": 32,
                 "max_new_tokens": 24, "prompt_bucket": 32, "response_bucket": 8, "patch_bucket": 64,
                 "kl_coef": 1e-3, **rl})
    c.optim.groups = [(".*", {"type": "constant", "peak": 2e-3}, "policy")]
    return c
