"""Shared data types of the evaluation suite: `EvalItem`, `ItemScore` and `BenchmarkSpec`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

QUESTION_TYPES = ("closed", "open", "mc", "yesno", "report")


@dataclasses.dataclass(frozen=True)
class EvalItem:
    """One evaluation question, model-agnostic.

    Attributes:
        id: stable, unique id inside the benchmark (used for resuming and for joining predictions).
        benchmark: registry name (e.g. "VQA_RAD").
        category: primary category for per-category metrics ("" when the benchmark has none).
        question_type: one of "closed" (short exact answer), "open", "mc" (multiple choice),
            "yesno" or "report".
        images: local image paths, in prompt order (empty for text-only benchmarks).
        question: the raw question text (used by the LLM judge).
        prompt: the full user prompt text (MedEvalKit wording), without image placeholders.
        messages: chat messages in the Qwen2.5-VL content format
            (`[{"role": "user", "content": [{"type": "image", "image": path}, {"type": "text", ...}]}]`).
        answer: the reference answer (a letter "A".."J" for multiple choice; the reference report for
            report generation).
        options: option texts without their letters (multiple choice only).
        meta: benchmark-specific extras (language, answer_type, extra category dimensions, ...).
    """

    id: str
    benchmark: str
    category: str
    question_type: str
    images: tuple[str, ...]
    question: str
    answer: str
    prompt: str = ""
    messages: tuple[dict, ...] = ()
    options: tuple[str, ...] = ()
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.question_type not in QUESTION_TYPES:
            raise ValueError(
                f"EvalItem {self.id!r}: question_type {self.question_type!r} not in {QUESTION_TYPES}"
            )

    @property
    def split(self) -> str:
        """ "closed" or "open" group used by the VQA benchmarks' closed/open accuracy split."""
        return "open" if self.question_type == "open" else "closed"


@dataclasses.dataclass
class ItemScore:
    """Rule-based score of one response.

    Attributes:
        correct: True/False for QA items; None for report generation (scored at corpus level).
        pred: what was extracted from the response (a letter, yes/no, a short answer, or the report).
        metrics: per-item extra metrics (open-ended BLEU/ROUGE/F1... under MedEvalKit's keys).
        split: "open" or "closed" for the closed/open VQA benchmarks, else "".
        judge_response: the text MedEvalKit sends to the LLM judge for this item (None: never judged).
        judge_reference: the reference MedEvalKit sends with it.
    """

    correct: bool | None
    pred: str
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    split: str = ""
    judge_response: str | None = None
    judge_reference: str | None = None


@dataclasses.dataclass(frozen=True)
class LoadOptions:
    """How a loader materialises items.

    Attributes:
        cache_dir: where images embedded in data files (parquet) are written; None: a folder
            `lingshu_eval_images` in the system temporary directory.
        need_images: True to generate: embedded images are written to disk and every image path is
            checked. False to score predictions made elsewhere: nothing is written or checked, and
            embedded images are named by a reference (`file.parquet#3:image`).
    """

    cache_dir: str | None = None
    need_images: bool = True


@dataclasses.dataclass(frozen=True)
class BenchmarkSpec:
    """Registry entry of one benchmark.

    Attributes:
        name: registry name (MedEvalKit's name where it has one).
        display: column name in the results table.
        group: "multimodal", "text" or "report" (which table the benchmark belongs to).
        loader: `loader(data_dir, options) -> list[EvalItem]` (prompts not yet built).
        build_prompt: `build_prompt(item, reasoning) -> str` (MedEvalKit wording).
        scorer: `scorer(item, response, scoring) -> ItemScore` (`scoring`: a `fixes.Scoring`).
        dirnames: folder names searched under a root data directory.
        category_keys: extra `item.meta` keys reported as category dimensions.
        judge_open: whether an LLM judge, when given, decides the open questions (and, for SLAKE in
            medevalkit mode, all of them).
        multi_image_prefix: always prefix images with `<image_i>: ` (MedEvalKit's "images" path).
        has_answers: False for a split without public answers (MMMU test): predictions are written for
            submission and not scored.
    """

    name: str
    display: str
    group: str
    loader: Callable[[str, LoadOptions], list[EvalItem]]
    build_prompt: Callable[[EvalItem, bool], str]
    scorer: Callable[[EvalItem, str], ItemScore]
    dirnames: Sequence[str] = ()
    category_keys: Sequence[str] = ()
    judge_open: bool = False
    multi_image_prefix: bool = False
    has_answers: bool = True
