"""GRPO (Lingshu stage 4): loss pieces (`loss`), reward plugins (`rewards`), prompt data (`data`),
rollouts (`rollout`) and the training loop (`trainer.train`, CLI scripts/train_rl.py; imported on use).
"""

from lingshu_jax.rl.data import PromptSchedule, load_prompts, parse_record, read_prompts
from lingshu_jax.rl.loss import aggregate, group_advantages, grpo_loss, k3_kl, token_entropy, token_log_probs
from lingshu_jax.rl.rewards import (
    LINGSHU_REWARDS,
    accuracy_reward,
    combine_rewards,
    format_reward,
    get_reward,
    list_rewards,
    register_reward,
)

__all__ = [
    "LINGSHU_REWARDS",
    "PromptSchedule",
    "accuracy_reward",
    "aggregate",
    "combine_rewards",
    "format_reward",
    "get_reward",
    "group_advantages",
    "grpo_loss",
    "k3_kl",
    "list_rewards",
    "load_prompts",
    "parse_record",
    "read_prompts",
    "register_reward",
    "token_entropy",
    "token_log_probs",
]
