"""Multiple-choice medical VQA: PMC-VQA and OmniMedVQA.

Published formats read here:
- PMC-VQA (`RadGenome/PMC-VQA`): `test_2.csv` (MedEvalKit's file; `test.csv` when it is absent) with
  columns Figure_path, Question, Choice A..D, Answer (a letter, or `Answer_label` holding it), images
  under `figures/` or `images/`. Options carry their own prefix ("A:text"); it is dropped and the
  options are listed as "A. text" like every other benchmark.
- OmniMedVQA (open-access part): `QA_information/Open-access/*.json`, arrays of {question_id, question,
  gt_answer (an option's text), option_A..option_D, image_path (relative to the root), modality_type,
  question_type, dataset}. Categories: modality_type (plus question_type), as MedEvalKit reports.
"""

from __future__ import annotations

import os
import re

from lingshu_jax.evals.benchmarks.common import check_unique, mc_item, strip_letter_prefix
from lingshu_jax.evals.datafiles import find_first, image_path, read_csv, read_json_records, require
from lingshu_jax.evals.prompts import LETTERS
from lingshu_jax.evals.types import EvalItem, LoadOptions


def _pmc_image(data_dir: str, figure: str, where: str, options: LoadOptions) -> str:
    for sub in ("figures", "images"):
        candidate = os.path.join(data_dir, sub, figure)
        if os.path.isfile(candidate):
            return candidate
    return image_path(os.path.join(data_dir, "figures"), figure, where, options)


def load_pmc_vqa(data_dir: str, options: LoadOptions) -> list[EvalItem]:
    """PMC-VQA test_2.csv (or test.csv)."""
    name = "test_2.csv" if os.path.exists(os.path.join(data_dir, "test_2.csv")) else "test.csv"
    path = os.path.join(data_dir, name)
    items = []
    for row_no, (loc, rec) in enumerate(read_csv(path)):
        raw = [str(require(rec, f"Choice {letter}", loc)) for letter in "ABCD"]
        opts = [strip_letter_prefix(cell, letter) for cell, letter in zip(raw, "ABCD")]
        answer = str(rec.get("Answer_label") or require(rec, "Answer", loc)).strip()
        m = re.match(r"^\(?([A-Da-d])\s*[:.)]", answer)
        if m:
            answer = m.group(1).upper()
        elif len(answer) > 1:
            answer = strip_letter_prefix(answer, answer[:1].upper())
        figure = str(require(rec, "Figure_path", loc))
        item_id = str(rec.get("index") or row_no)
        items.append(
            mc_item(
                "PMC_VQA",
                item_id,
                str(require(rec, "Question", loc)),
                opts,
                answer,
                loc,
                images=(_pmc_image(data_dir, figure, loc, options),),
                choices=raw,  # PMC_VQA.py:45: the cells as they are ("A:text")
            )
        )
    return check_unique(items, path)


def _omni_answer(rec: dict, letters: list[str]) -> str | None:
    """OmniMedVQA.py:93-97: the letter of the last option equal to gt_answer (exact text), else None."""
    found = None
    for letter in letters:
        if rec[f"option_{letter}"] == rec["gt_answer"]:
            found = letter
    return found


def load_omnimedvqa(data_dir: str, options: LoadOptions) -> list[EvalItem]:
    """OmniMedVQA open-access QA files; the text answer becomes its option letter.

    A reference that equals no option is kept as text and scored as MedEvalKit scores it (it stays in
    `sample["answer"]`, OmniMedVQA.py:107); such items are flagged `meta["unmatched_reference"]` and
    counted in the benchmark's metrics (`num_unmatched_references`).
    """
    items = []
    for path in find_first(
        data_dir, ("QA_information/Open-access/*.json",), "QA_information/Open-access/*.json"
    ):
        stem = os.path.splitext(os.path.basename(path))[0]
        for loc, rec in read_json_records(path):
            require(rec, "gt_answer", loc)
            letters = [letter for letter in LETTERS[:4] if f"option_{letter}" in rec]
            opts = [str(rec[f"option_{letter}"]) for letter in letters]
            letter = _omni_answer(rec, letters)
            items.append(
                mc_item(
                    "OmniMedVQA",
                    f"{stem}/{require(rec, 'question_id', loc)}",
                    str(require(rec, "question", loc)),
                    opts,
                    letter or str(rec["gt_answer"]),
                    loc,
                    images=(image_path(data_dir, str(require(rec, "image_path", loc)), loc, options),),
                    category=str(rec.get("modality_type", "")),
                    meta={"question_type": rec.get("question_type", ""), "dataset": rec.get("dataset", "")},
                    choices=[f"{lt}. {o}" for lt, o in zip(letters, opts)],
                    keep_unmatched=letter is None,
                )
            )
    return check_unique(items, data_dir)
