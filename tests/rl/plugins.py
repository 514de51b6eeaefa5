"""Reward plugins that the RL trainer tests name in `config.reward_modules` (imported by the trainer, not
by the tests), as a user's own verifier module would be."""

import os
import signal

from lingshu_jax.rl.rewards import register_reward

SIGTERM_AT_CALL = "LINGSHU_TEST_SIGTERM_AT_CALL"
CALLS = {"test_sigterm": 0}


@register_reward("test_mentions_colour", overwrite=True)
def mentions_colour(completions, references):
    """1.0 when the reasoning names one of the toy task's colours."""
    return [float(any(c in text for c in ("red", "green", "blue", "yellow"))) for text in completions]


@register_reward("test_text_length", overwrite=True)
def text_length(completions, references):
    """A graded reward of any text (its length mod 5, over 4): random policies get varied rewards, so
    group advantages and the policy loss are non-zero even for an untrained model."""
    return [(len(text) % 5) / 4 for text in completions]


@register_reward("test_sigterm", overwrite=True)
def sigterm(completions, references):
    """Always 0; on its N-th call (N from the environment) it sends this process SIGTERM, the way a
    cluster preempts a job in the middle of a step."""
    CALLS["test_sigterm"] += 1
    if str(CALLS["test_sigterm"]) == os.environ.get(SIGTERM_AT_CALL):
        os.kill(os.getpid(), signal.SIGTERM)
    return [0.0] * len(completions)
