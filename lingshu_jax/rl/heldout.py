"""Held-out greedy evaluation of an RL run: the policy before GRPO (`init_from`) and after (WORKDIR/final)
answer the same held-out prompts greedily; the config's rewards score them.

    config.heldout = {"paths", "root", "yes_no_keep", "format_prompt", "num_prompts", "max_new_tokens"}

`train_and_report(config, workdir)` (what scripts/train_rl.py runs) trains, then prints the before/after
table (`report.before_after_markdown`) and writes it to WORKDIR/before_after.md; the run's reward curves are
WORKDIR/curves.png (written by the trainer).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import jax
import numpy as np

from lingshu_jax.infer.sampling import SamplingConfig
from lingshu_jax.rl.data import Prompt, load_prompts, prepare_easy_vqa_prompts
from lingshu_jax.rl.rollout import encode_prompt, rl_processor, sample_responses

_PROMPT_KEYS = ("paths", "root", "yes_no_keep", "format_prompt")


def heldout_prompts(config) -> list[Prompt]:
    """The first `config.heldout.num_prompts` held-out prompts (file order, yes/no downsampled)."""
    h = config.heldout
    if config.get("prepare_demo_data"):
        prepare_easy_vqa_prompts(config.prepare_demo_data, split="test")
    prompts = load_prompts({k: h[k] for k in _PROMPT_KEYS if k in h}, config.seed)
    return prompts[: int(h.num_prompts)]


def greedy_scores(
    model_path: str, prompts: Sequence[Prompt], reward_fn, max_new_tokens: int, max_pixels: int | None = None
) -> dict:
    """{reward name: mean over the prompts, "reward": mean weighted total, "n"} of greedy answers of the
    model at `model_path` (a lingshu-jax checkpoint / workdir or an HF directory)."""
    from lingshu_jax.convert.load import load_any

    model_cfg, params, assets = load_any(model_path)
    processor = rl_processor(assets, max_pixels)
    pad = int(processor.tokenizer.pad_token_id)
    encoded = [encode_prompt(processor, p) for p in prompts]
    tokens, lengths, _ = sample_responses(
        model_cfg,
        params,
        encoded,
        1,
        max_new_tokens,
        SamplingConfig(0.0),
        jax.random.key(0),
        tuple(int(t) for t in processor.tokenizer.eos_token_ids),
        pad,
    )
    texts = [processor.decode(t[:n], skip_special_tokens=True) for t, n in zip(tokens, lengths)]
    total, per = reward_fn(texts, [p.reference for p in prompts])
    out = {name: float(np.mean(v)) for name, v in per.items()}
    out.update(reward=float(np.mean(total)), n=len(prompts))
    return out


def train_and_report(config, workdir: str) -> dict:
    """Runs GRPO (`rl.trainer.train`), then the held-out before/after comparison and the table."""
    from lingshu_jax.rl import report
    from lingshu_jax.rl.trainer import make_reward_fn, train

    last = train(config, workdir)
    final = os.path.join(workdir, "final")
    if not os.path.exists(os.path.join(final, "lingshu_checkpoint.json")):
        return last  # stopped early (preemption): rerun to finish, then the report comes
    if jax.process_index() != 0:  # multi-host: process 0 evaluates and writes the report
        return last
    summary = report.summarize_workdir(workdir)
    heldout = {}
    if config.get("heldout") and config.init_from:
        prompts = heldout_prompts(config)
        reward_fn, _ = make_reward_fn(config)
        n = int(config.heldout.max_new_tokens)
        heldout = {
            "before": greedy_scores(config.init_from, prompts, reward_fn, n, config.data.get("max_pixels")),
            "after": greedy_scores(final, prompts, reward_fn, n, config.data.get("max_pixels")),
        }
        with open(os.path.join(workdir, "heldout.json"), "w") as f:
            json.dump(heldout, f, indent=1)
    table = report.before_after_markdown(summary, heldout)
    with open(os.path.join(workdir, "before_after.md"), "w") as f:
        f.write(table)
    print(table + f"\ncurves: {os.path.join(workdir, 'curves.png')}")
    return last
