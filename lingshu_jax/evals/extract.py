"""Pieces of answer extraction shared by the evaluation scorers and the RL rewards.

`strip_think` (the reasoning block), `extract_boxed` (content of the last closed ``\\boxed{...}``, nested
braces allowed, as `mathruler.grader.extract_boxed_content` minus its "None" string), `ANSWER_MARKERS`
(MedEvalKit's `parse_response` markers, in its order); MedEvalKit's full extraction is
`lingshu_jax.evals.scoring.parse_response`.

`has_think_answer_format` is the strict reasoning-format check; the RL format reward is this function.
"""

from __future__ import annotations

import re

_BOXED = "\\boxed{"
# MedEvalKit utils/utils.py:141-151, in its order; each is applied to what the previous left.
ANSWER_MARKERS = (
    "**answer**:",
    "**answer**",
    "*answer*:",
    "**answer:**",
    "answer is",
    "answer:",
    "答案:",
    "final answer",
    "final answer is",
)


def strip_think(text: str) -> str:
    """Removes the reasoning block: returns what follows the last ``</think>``.

    A ``<think>`` that is never closed (a truncated generation) leaves only the text before it.
    Text without think tags is returned stripped and otherwise unchanged.
    """
    if text is None:
        return ""
    if "</think>" in text:
        return text.rsplit("</think>", 1)[1].strip()
    if "<think>" in text:
        return text.split("<think>", 1)[0].strip()
    return text.strip()


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}``, braces balanced; None when there is none (or unclosed)."""
    start = text.rfind(_BOXED)
    if start < 0:
        return None
    depth = 0
    body_start = start + len(_BOXED)
    for i in range(body_start, len(text)):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            if depth == 0:
                return text[body_start:i].strip()
            depth -= 1
    return None


ANSWER_STYLES = ("either", "tag", "boxed")
_ANSWER_TAG = re.compile(r"<answer>(?P<body>.*?)</answer>", re.DOTALL)


def _answer_tag_only(rest: str) -> bool:
    """The whole of ``rest`` is one ``<answer>...</answer>`` (only whitespace around, non-blank body)."""
    match = _ANSWER_TAG.fullmatch(rest.strip())
    single = rest.count("<answer>") == 1 and rest.count("</answer>") == 1
    return bool(match and single and match.group("body").strip())


def _single_boxed(rest: str) -> bool:
    """No ``<answer>`` tags and exactly one closed ``\\boxed{...}`` with a non-blank body."""
    no_tags = "<answer>" not in rest and "</answer>" not in rest
    return no_tags and rest.count(_BOXED) == 1 and bool(extract_boxed(rest))


def has_think_answer_format(text: str | None, answer_style: str = "either") -> bool:
    """Strict reasoning format (the RL format reward, `lingshu_jax.rl.rewards.format_reward`, is this).

    Leading/trailing whitespace is ignored. The response starts with ``<think>``; ``<think>`` and
    ``</think>`` each occur exactly once; the reasoning between them is not blank and holds no
    ``<answer>``/``</answer>`` tag. What follows ``</think>`` is, by ``answer_style``:
      "tag": only ``<answer>ANSWER</answer>`` (whitespace around allowed, ANSWER not blank, one pair);
      "boxed": no ``<answer>`` tags and exactly one closed ``\\boxed{ANSWER}``, ANSWER not blank; other
        text around it is allowed ("The answer is \\boxed{B}.");
      "either": one of the two.
    """
    if answer_style not in ANSWER_STYLES:
        raise ValueError(f"answer_style {answer_style!r} not in {ANSWER_STYLES}")
    text = (text or "").strip()
    if not text.startswith("<think>") or text.count("<think>") != 1 or text.count("</think>") != 1:
        return False
    think, rest = text[len("<think>") :].split("</think>")
    if not think.strip() or "<answer>" in think or "</answer>" in think:
        return False
    tag_ok = answer_style in ("either", "tag") and _answer_tag_only(rest)
    return tag_ok or (answer_style in ("either", "boxed") and _single_boxed(rest))
