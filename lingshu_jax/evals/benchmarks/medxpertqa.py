"""MedXpertQA, multimodal (MM) and text (Text) subsets.

Format: the Hugging Face release `TsinghuaC3I/MedXpertQA`: `MM/test.jsonl` and `Text/test.jsonl`
(id, question, options {"A": .., "E"}, label, images [file names, MM only], medical_task,
body_system, question_type) and `images/` (from images.zip). The question text already ends with the
answer choices; MedEvalKit lists the options again after it, and so do we.

MedEvalKit passes MM images through its multi-image path, so even one image gets ``<image_1>: ``.
Categories: medical_task (plus question_type and body_system), as MedEvalKit reports.
"""

from __future__ import annotations

import os

from lingshu_jax.evals.benchmarks.common import check_unique, mc_item
from lingshu_jax.evals.datafiles import image_path, read_jsonl, require
from lingshu_jax.evals.prompts import LETTERS
from lingshu_jax.evals.types import EvalItem, LoadOptions


def _subset_file(data_dir: str, subset: str) -> str:
    for candidate in (os.path.join(data_dir, subset, "test.jsonl"), os.path.join(data_dir, "test.jsonl")):
        if os.path.isfile(candidate):
            return candidate
    raise ValueError(f"{data_dir}: no {subset}/test.jsonl (MedXpertQA {subset} test split)")


def _image_root(data_dir: str, path: str) -> str:
    for root in (data_dir, os.path.dirname(os.path.dirname(path))):
        if os.path.isdir(os.path.join(root, "images")):
            return os.path.join(root, "images")
    return os.path.join(data_dir, "images")


def _load(data_dir: str, subset: str, options: LoadOptions) -> list[EvalItem]:
    path = _subset_file(data_dir, subset)
    image_root = _image_root(data_dir, path)
    benchmark = f"MedXpertQA-{subset}"
    items = []
    for loc, rec in read_jsonl(path):
        opts = require(rec, "options", loc)
        if not isinstance(opts, dict) or sorted(opts) != list(LETTERS[: len(opts)]):
            raise ValueError(f"{loc}: options must be a dict keyed A, B, C, ... (got {opts!r})")
        images = ()
        if subset == "MM":
            names = require(rec, "images", loc)
            if not isinstance(names, list) or not names:
                raise ValueError(f"{loc}: MM item without an images list")
            images = tuple(image_path(image_root, str(n), loc, options) for n in names)
        items.append(
            mc_item(
                benchmark,
                str(require(rec, "id", loc)),
                str(require(rec, "question", loc)),
                [opts[k] for k in sorted(opts)],
                require(rec, "label", loc),
                loc,
                images=images,
                category=str(rec.get("medical_task", "")),
                meta={
                    "question_type": rec.get("question_type", ""),
                    "body_system": rec.get("body_system", ""),
                },
            )
        )
    return check_unique(items, path)


def load_medxpertqa_mm(data_dir: str, options: LoadOptions) -> list[EvalItem]:
    """MedXpertQA MM test split (2,000 questions, images under `images/`)."""
    return _load(data_dir, "MM", options)


def load_medxpertqa_text(data_dir: str, options: LoadOptions) -> list[EvalItem]:
    """MedXpertQA Text test split (2,450 questions)."""
    return _load(data_dir, "Text", options)
