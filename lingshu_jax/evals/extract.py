"""Answer extraction from model responses, shared by the evaluation scorers and the RL rewards.

Order (MedEvalKit's `parse_response`): the content of the last ``\\boxed{...}`` (nested braces allowed,
as `mathruler.grader.extract_boxed_content`); else the text of the ``<answer>...</answer>`` tags (all
of them joined by a space, as MedEvalKit's `extract`); then, on the result, the text after the last
answer marker ("**answer**:", "answer is", "answer:", "final answer", ...), applied marker by marker
in MedEvalKit's order. One deliberate change: a ``<think>...</think>`` block is removed first
(`strip_think`), so reasoning text never supplies the answer.

`has_think_answer_format` is the strict reasoning-format check; the RL format reward is this function.
"""

from __future__ import annotations

import re

_BOXED = "\\boxed{"
# MedEvalKit utils.parse_response, in its order; each is applied to what the previous left.
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


def extract_tag(text: str, tag: str) -> str | None:
    """Contents of every closed ``<tag>...</tag>``, joined by a space; None when there is none."""
    parts = re.findall(rf"<{re.escape(tag)}>(.*?)</{re.escape(tag)}>", text, flags=re.DOTALL)
    if not parts:
        return None
    return " ".join(p.strip() for p in parts).strip()


def after_answer_marker(text: str) -> str:
    """Text after the last answer marker (case-insensitive), marker by marker in MedEvalKit's order."""
    for marker in ANSWER_MARKERS:
        hits = list(re.finditer(re.escape(marker), text, flags=re.IGNORECASE))
        if hits:
            text = text[hits[-1].end() :]
    return text.strip()


def extract_answer(text: str | None) -> str:
    """The answer a response gives: think removed, then boxed, else <answer> tags, then answer markers.

    Returns the stripped answer text ("" for an empty response). Case is preserved.
    """
    text = strip_think(text or "")
    boxed = extract_boxed(text)
    if boxed is not None:
        text = boxed
    else:
        tagged = extract_tag(text, "answer")
        if tagged is not None:
            text = tagged
    return after_answer_marker(text)


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
