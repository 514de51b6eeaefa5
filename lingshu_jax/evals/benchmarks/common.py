"""Helpers shared by the benchmark modules: multiple-choice items, prompts and scorers, id checks."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from lingshu_jax.evals import prompts
from lingshu_jax.evals.extract import strip_think
from lingshu_jax.evals.scoring import score_closed_exact, score_multiple_choice, score_open, score_yes_no
from lingshu_jax.evals.types import EvalItem, ItemScore

_LETTER_PREFIX = re.compile(r"^\s*\(?([A-Za-z])\s*[).:：]\s*")


def strip_letter_prefix(option: str, letter: str) -> str:
    """Drops a leading "A:" / "A." / "(A)" when it is this option's own letter (PMC-VQA's options)."""
    m = _LETTER_PREFIX.match(option)
    if m and m.group(1).upper() == letter:
        return option[m.end() :].strip()
    return option.strip()


def answer_letter(answer: Any, options: Sequence[str], where: str) -> str:
    """The reference as a letter: accepts a letter or an option's exact text."""
    text = str(answer).strip()
    letters = prompts.LETTERS[: len(options)]
    if len(text) == 1 and text.upper() in letters:
        return text.upper()
    for letter, option in zip(letters, options):
        if text == str(option).strip():
            return letter
    raise ValueError(f"{where}: answer {text!r} is neither an option letter ({letters}) nor an option text")


def mc_item(
    benchmark: str,
    item_id: str,
    question: str,
    options: Sequence[Any],
    answer: Any,
    where: str,
    images: Sequence[str] = (),
    category: str = "",
    meta: Mapping[str, Any] | None = None,
) -> EvalItem:
    """A multiple-choice `EvalItem`; the answer is normalised to a letter, options must be non-empty."""
    options = tuple(str(o).strip() for o in options)
    if len(options) < 2:
        raise ValueError(f"{where}: needs at least 2 options, got {len(options)}")
    return EvalItem(
        id=item_id,
        benchmark=benchmark,
        category=category,
        question_type="mc",
        images=tuple(images),
        question=str(question),
        answer=answer_letter(answer, options, where),
        options=options,
        meta=dict(meta or {}),
    )


def mc_prompt(item: EvalItem, reasoning: bool) -> str:
    """MedEvalKit multiple-choice prompt; PubMedQA-style items carry a "context" in meta."""
    prompt = prompts.multiple_choice_prompt(
        item.question, prompts.format_choices(item.options), reasoning, item.meta.get("lang", "en")
    )
    context = item.meta.get("context")
    return f"Context: {context}\n{prompt}" if context else prompt


def mc_score(item: EvalItem, response: str) -> ItemScore:
    """Multiple choice by letter or option text, else the most similar option."""
    return score_multiple_choice(response, item.options, item.answer)


def vqa_prompt(item: EvalItem, reasoning: bool) -> str:
    """VQA-RAD / PathVQA: yes/no questions get the judgement prompt, the rest the open prompt."""
    lang = item.meta.get("lang", "en")
    if item.question_type == "yesno":
        return prompts.judgement_prompt(item.question, reasoning, lang)
    if item.question_type == "closed":
        return prompts.closed_prompt(item.question, reasoning, lang)
    return prompts.open_prompt(item.question, reasoning, lang)


def vqa_score(item: EvalItem, response: str) -> ItemScore:
    """yes/no -> exactly one of yes/no; closed -> exact match; open -> exact match + BLEU/ROUGE/F1."""
    if item.question_type == "yesno":
        return score_yes_no(response, item.answer)
    if item.question_type == "closed":
        return score_closed_exact(response, item.answer)
    return score_open(response, item.answer)


def report_prompt(item: EvalItem, reasoning: bool) -> str:  # pylint: disable=unused-argument
    """Report generation prompt (no reasoning variant in MedEvalKit)."""
    return prompts.report_prompt()


def report_score(item: EvalItem, response: str) -> ItemScore:  # pylint: disable=unused-argument
    """Reports are scored at corpus level; per item we keep the report without its think block."""
    return ItemScore(correct=None, pred=strip_think(response or ""))


def check_unique(items: Sequence[EvalItem], source: str) -> list[EvalItem]:
    """Raises on duplicate ids (they would break resuming and joining predictions)."""
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise ValueError(f"{source}: duplicate item id {item.id!r}")
        seen.add(item.id)
    if not items:
        raise ValueError(f"{source}: no items")
    return list(items)
