"""Reward plugins for GRPO, keyed by name, and their weighted combination.

A reward is ``fn(completions: Sequence[str], references: Sequence[Any]) -> Sequence[float]`` (one value
per completion; host-side Python, no JAX). Completions are the decoded responses without special tokens.

Lingshu-RL (paper §3): ``combine_rewards(LINGSHU_REWARDS)`` = strict format x0.5 + accuracy x1.0.

Built-ins:
  format            1.0 iff the completion is strictly ``<think>REASONING</think>`` followed by an answer
                    in either required form, by the evaluation suite's own check
                    (`lingshu_jax.evals.extract.has_think_answer_format`); "format_boxed" and
                    "format_answer_tag" accept only one of the two forms.
  accuracy          1.0 iff the response is right by the evaluation suite's own rule-based scorer
                    (`lingshu_jax.evals.scoring`, which extracts with `lingshu_jax.evals.extract`): one
                    shared implementation, so a reward of 1 means the benchmark would count it correct.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from lingshu_jax.evals import scoring
from lingshu_jax.evals.extract import has_think_answer_format

RewardFn = Callable[[Sequence[str], Sequence[Any]], Sequence[float]]
_REGISTRY: dict[str, RewardFn] = {}

LINGSHU_REWARDS = (("format", 0.5), ("accuracy", 1.0))


# ---------------------------------------------------------------- registry
def register_reward(name: str, *, overwrite: bool = False) -> Callable[[RewardFn], RewardFn]:
    """Decorator registering ``fn`` under ``name``. Re-registering a name raises unless ``overwrite``."""

    def decorator(fn: RewardFn) -> RewardFn:
        if name in _REGISTRY and _REGISTRY[name] is not fn and not overwrite:
            raise ValueError(f"reward {name!r} is already registered ({_REGISTRY[name].__qualname__})")
        _REGISTRY[name] = fn
        return fn

    return decorator


def get_reward(name: str) -> RewardFn:
    """The reward registered under ``name``; ValueError naming the known rewards otherwise."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown reward {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def list_rewards() -> list[str]:
    return sorted(_REGISTRY)


def combine_rewards(
    specs: Sequence[tuple[str, float]],
) -> Callable[[Sequence[str], Sequence[Any]], tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Weighted sum of registered rewards.

    Args:
      specs: [(name, weight), ...]; names are resolved now, so a typo fails before any rollout.

    Returns:
      fn(completions [n], references [n]) -> (total [n] float32, {name: unweighted values [n] float32}).
    """
    if not specs:
        raise ValueError("combine_rewards: no rewards given")
    names = [name for name, _ in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"combine_rewards: duplicate reward names in {names}")
    fns = [(name, float(weight), get_reward(name)) for name, weight in specs]

    def combined(completions: Sequence[str], references: Sequence[Any]):
        if len(completions) != len(references):
            raise ValueError(
                f"combine_rewards: {len(completions)} completions but {len(references)} references"
            )
        per_reward, total = {}, np.zeros(len(completions), np.float32)
        for name, weight, fn in fns:
            values = np.asarray(fn(completions, references), np.float32)
            if values.shape != (len(completions),):
                raise ValueError(f"reward {name!r} gave shape {values.shape}, expected ({len(completions)},)")
            per_reward[name] = values
            total = total + weight * values
        return total, per_reward

    return combined


# ---------------------------------------------------------------- format
# this module's answer-style names -> the evaluation suite's (`evals.extract.ANSWER_STYLES`)
_ANSWER_STYLES = {"any": "either", "boxed": "boxed", "answer_tag": "tag"}


def format_reward(completion: str, answer_style: str = "any") -> float:
    """Strict reasoning format, 1.0 or 0.0: `lingshu_jax.evals.extract.has_think_answer_format`, the
    evaluation suite's own check (one implementation; its docstring states the rules).

    answer_style: "answer_tag" (only ``<answer>ANSWER</answer>`` after ``</think>``), "boxed" (exactly one
    ``\\boxed{ANSWER}``, no answer tags) or "any" (either of the two).
    """
    if answer_style not in _ANSWER_STYLES:
        raise ValueError(
            f"format_reward: unknown answer_style {answer_style!r}; known: {list(_ANSWER_STYLES)}"
        )
    return float(has_think_answer_format(completion, _ANSWER_STYLES[answer_style]))


def _format_plugin(style: str) -> RewardFn:
    def reward(completions: Sequence[str], references: Sequence[Any]) -> list[float]:
        del references
        return [format_reward(c, style) for c in completions]

    reward.__qualname__ = f"format_reward[{style}]"
    return reward


register_reward("format")(_format_plugin("any"))
register_reward("format_boxed")(_format_plugin("boxed"))
register_reward("format_answer_tag")(_format_plugin("answer_tag"))


# ---------------------------------------------------------------- accuracy
_ACCURACY_TYPES = ("mc", "yesno", "closed", "open")


def _reference_fields(ref: Any) -> tuple[str, str, tuple[str, ...]]:
    """(question_type, answer, options) of a reference.

    A reference is an `EvalItem`-like object (attributes ``question_type``, ``answer``, ``options``), a
    mapping with key ``answer`` and optional ``question_type`` / ``options``, or a bare answer string
    (a closed question). Without a question type, options make it "mc", else it is "closed".
    """
    if isinstance(ref, str):
        return "closed", ref, ()
    get = ref.get if isinstance(ref, Mapping) else lambda key, default=None: getattr(ref, key, default)
    answer, options = get("answer"), tuple(get("options", None) or ())
    if answer is None:
        raise ValueError(f"accuracy reward: reference without an answer: {ref!r}")
    qtype = get("question_type", None) or ("mc" if options else "closed")
    if qtype not in _ACCURACY_TYPES:
        raise ValueError(f"accuracy reward: question_type {qtype!r} not in {_ACCURACY_TYPES}")
    return qtype, str(answer), options


def accuracy_reward(completion: str, reference: Any) -> float:
    """1.0 if the evaluation scorer marks ``completion`` correct for ``reference``, else 0.0.

    mc: `scoring.score_multiple_choice` (answer is a letter); yesno: `scoring.score_yes_no`;
    closed and open: `scoring.score_closed_exact` (MedEvalKit's `judge_close_end_vqa` in the default
    scoring mode: the parsed answer, newlines and periods removed, equals the reference).
    """
    qtype, answer, options = _reference_fields(reference)
    if qtype == "mc":
        score = scoring.score_multiple_choice(completion, options, answer)
    elif qtype == "yesno":
        score = scoring.score_yes_no(completion, answer)
    else:
        score = scoring.score_closed_exact(completion, answer)
    return float(bool(score.correct))


@register_reward("accuracy")
def _accuracy(completions: Sequence[str], references: Sequence[Any]) -> list[float]:
    return [accuracy_reward(c, r) for c, r in zip(completions, references)]
