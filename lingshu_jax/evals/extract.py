"""Answer extraction from model responses, shared by the evaluation scorers and the RL rewards.

Order (MedEvalKit's `parse_response`): the content of the last ``\\boxed{...}`` (nested braces allowed,
as `mathruler.grader.extract_boxed_content`); else the text of the ``<answer>...</answer>`` tags (all
of them joined by a space, as MedEvalKit's `extract`); then, on the result, the text after the last
answer marker ("**answer**:", "answer is", "answer:", "final answer", ...), applied marker by marker
in MedEvalKit's order. One deliberate change: a ``<think>...</think>`` block is removed first
(`strip_think`), so reasoning text never supplies the answer.
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


_THINK_BLOCK = re.compile(r"^\s*<think>(?P<think>.*?)</think>(?P<rest>.*)$", re.DOTALL)


def has_think_answer_format(text: str, answer_style: str = "either") -> bool:
    """Strict reasoning format: one ``<think>...</think>`` first, then a non-empty answer.

    Args:
      text: the full response.
      answer_style: what the part after ``</think>`` must hold: "tag" (exactly one
        ``<answer>...</answer>`` with non-empty content and nothing else outside it but whitespace),
        "boxed" (a closed, non-empty ``\\boxed{...}``), or "either" (one of the two).
    """
    if answer_style not in ("tag", "boxed", "either"):
        raise ValueError(f"answer_style {answer_style!r} not in ('tag', 'boxed', 'either')")
    m = _THINK_BLOCK.match(text or "")
    if m is None or not m.group("think").strip():
        return False
    rest = m.group("rest")
    if "<think>" in rest or "</think>" in rest:
        return False
    tag_ok = (
        re.fullmatch(r"\s*<answer>(?!.*<answer>)(.*?\S.*?)</answer>\s*", rest, flags=re.DOTALL) is not None
    )
    boxed = extract_boxed(rest)
    boxed_ok = bool(boxed)
    if answer_style == "tag":
        return tag_ok
    if answer_style == "boxed":
        return boxed_ok
    return tag_ok or boxed_ok
