"""Helpers shared by the benchmark modules: multiple-choice items, prompts and scorers, id checks."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from lingshu_jax.evals import prompts
from lingshu_jax.evals.fixes import Scoring
from lingshu_jax.evals.scoring import (
    boxed_or_none,
    judge_close_end,
    judge_judgement,
    judge_multi_choice,
    judge_open_end,
    tag_content,
    without_think,
)
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
    sep: str = ". ",
    choices: Sequence[str] | None = None,
    keep_unmatched: bool = False,
) -> EvalItem:
    """A multiple-choice `EvalItem`; the answer is normalised to a letter, options must be non-empty.

    `meta["choices"]` holds the lettered option lines exactly as the benchmark's MedEvalKit loader writes
    them (`sep` between letter and text: ". " or "."), or `choices` when given (PMC-VQA's own lines).
    `keep_unmatched`: the caller found no option for the reference; it is kept as it is (scored as
    MedEvalKit scores it) and flagged `meta["unmatched_reference"]`.
    """
    options = tuple(str(o).strip() for o in options)
    if len(options) < 2:
        raise ValueError(f"{where}: needs at least 2 options, got {len(options)}")
    lines = list(choices) if choices is not None else prompts.format_choices(options, sep)
    meta = dict(meta or {})
    if keep_unmatched:
        letter, meta["unmatched_reference"] = str(answer), True
    else:
        letter = answer_letter(answer, options, where)
    return EvalItem(
        id=item_id,
        benchmark=benchmark,
        category=category,
        question_type="mc",
        images=tuple(images),
        question=str(question),
        answer=letter,
        options=options,
        meta={**meta, "choices": tuple(lines)},
    )


def choice_lines(item: EvalItem) -> list[str]:
    """The lettered option lines of a multiple-choice item (as its MedEvalKit loader builds them)."""
    return list(item.meta.get("choices") or prompts.format_choices(item.options))


def mc_prompt(item: EvalItem, reasoning: bool) -> str:
    """MedEvalKit multiple-choice prompt; PubMedQA-style items carry a "context" in meta."""
    prompt = prompts.multiple_choice_prompt(
        item.question, choice_lines(item), reasoning, item.meta.get("lang", "en")
    )
    context = item.meta.get("context")
    return f"Context: {context}\n{prompt}" if context else prompt


def mc_score(item: EvalItem, response: str, scoring: Scoring) -> ItemScore:
    """`judge_multi_choice` on `extract(response, "answer")` (e.g. MedQA_USMLE.py:59-64)."""
    text = tag_content(without_think(response, scoring), "answer")
    correct, pred = judge_multi_choice(choice_lines(item), item.answer, text, scoring)
    return ItemScore(correct=correct, pred=pred)


def mc_score_raw(item: EvalItem, response: str, scoring: Scoring) -> ItemScore:
    """`judge_multi_choice` on the response itself (PMC_VQA.py:72-77 skips the <answer> extraction)."""
    text = without_think(response, scoring)
    correct, pred = judge_multi_choice(choice_lines(item), item.answer, text, scoring)
    return ItemScore(correct=correct, pred=pred)


def vqa_prompt(item: EvalItem, reasoning: bool) -> str:
    """VQA-RAD / PathVQA: judgement prompt for yes/no answers, else the open prompt (VQA_RAD.py:43-47).

    `meta["prompt_kind"]` carries the loader's routing where it differs from the scoring routing
    (PathVQA tests the answer case-sensitively here, PATH_VQA.py:43, and lower-cased when scoring, :93).
    """
    lang = item.meta.get("lang", "en")
    kind = item.meta.get("prompt_kind", item.question_type)
    if kind == "yesno":
        return prompts.judgement_prompt(item.question, reasoning, lang)
    if kind == "closed":
        return prompts.closed_prompt(item.question, reasoning, lang)
    return prompts.open_prompt(item.question, reasoning, lang)


def boxed_then_answer_tag(response: str) -> str:
    """VQA_RAD.py:88-91 (SLAKE.py:110-113, PATH_VQA.py:86-89): \boxed content, else <answer> content."""
    boxed = boxed_or_none(response)
    if boxed != "None":
        return boxed
    return tag_content(response, "answer") if "<answer>" in response else response


def vqa_score(item: EvalItem, response: str, scoring: Scoring) -> ItemScore:
    """VQA-RAD / PathVQA `cal_metrics` per item (VQA_RAD.py:87-121, PATH_VQA.py:85-119)."""
    text = boxed_then_answer_tag(without_think(response, scoring)).lower().strip()
    answer = item.answer.lower().strip()
    if answer in ("yes", "no"):
        correct, pred = judge_judgement(answer, text, scoring)
        return ItemScore(correct=correct, pred=pred, split="closed")
    metrics, pred = judge_open_end(answer, text, scoring)
    return ItemScore(
        correct=bool(metrics["em"]),
        pred=pred,
        metrics=metrics,
        split="open",
        judge_response=text,
        judge_reference=answer,
    )


def slake_score(item: EvalItem, response: str, scoring: Scoring) -> ItemScore:
    """SLAKE `cal_metrics` per item (SLAKE.py:109-147); every item carries its judge input (:120-121)."""
    text = boxed_then_answer_tag(without_think(response, scoring))
    answer = item.answer
    if item.meta.get("answer_type") == "OPEN":
        metrics, pred = judge_open_end(answer, text, scoring)
        correct, split = bool(metrics["em"]), "open"
    else:
        metrics, split = {}, "closed"
        routed = answer.lower().strip() if scoring.on("slake_yesno_case") else answer
        if routed in ("yes", "no"):
            correct, pred = judge_judgement(answer, text, scoring)
        else:
            correct, pred = judge_close_end(answer, text, scoring)
    return ItemScore(
        correct=correct, pred=pred, metrics=metrics, split=split, judge_response=text, judge_reference=answer
    )


def report_prompt(item: EvalItem, reasoning: bool) -> str:  # pylint: disable=unused-argument
    """Report generation prompt (`question_formats.get_report_generation_prompt`)."""
    return prompts.report_prompt()


def mimic_report_prompt(item: EvalItem, reasoning: bool) -> str:  # pylint: disable=unused-argument
    """MIMIC-CXR's prompt: the same sentence in a newline + indentation wrapper (MIMIC_CXR.py:85-87)."""
    return prompts.MIMIC_REPORT_PROMPT


def report_score(item: EvalItem, response: str, scoring: Scoring) -> ItemScore:  # pylint: disable=W0613
    """Reports are scored at corpus level; per item we keep the report (think block removed by the fix)."""
    return ItemScore(correct=None, pred=without_think(response, scoring))


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
