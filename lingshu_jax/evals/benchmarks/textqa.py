"""Text-only multiple-choice QA: MMLU (medical), PubMedQA, MedMCQA, MedQA-USMLE, Medbullets, SuperGPQA.

Published formats read here (each benchmark's folder):
- MMLU, 9 medical subjects (MedEvalKit's list): `cais/mmlu` parquet (`<subject>/test-*.parquet`:
  question, choices, answer 0-3) or the original CSVs (`data/test/<subject>_test.csv`, no header:
  question, A, B, C, D, answer letter).
- PubMedQA: `openlifescienceai/pubmedqa` test rows ({"data": {Question, Context [..], Options {A,B,C},
  Correct Option}}; parquet or json/jsonl), or the original `pqal_test_set.json`-style dict
  {pmid: {QUESTION, CONTEXTS, final_decision}} (options yes / no / maybe).
- MedMCQA, validation split: `openlifescienceai/medmcqa` parquet (`cop` 0-3) or the original `dev.json`
  (JSON lines, `cop` 1-4; the base is read off the data: a 0 means 0-based, a 4 means 1-based).
- MedQA-USMLE 4 options: `test.jsonl` (question, options {A..D}, answer_idx) or its parquet.
- Medbullets op4 / op5: the original CSVs (question, opa..ope, answer_idx) or the HF releases
  (`options` dict or opa..ope columns; parquet/jsonl).
- SuperGPQA: `SuperGPQA-all.jsonl` (or parquet), rows with discipline == "Medicine" only.
"""

from __future__ import annotations

import glob
import os

from lingshu_jax.evals.benchmarks.common import check_unique, mc_item
from lingshu_jax.evals.datafiles import find_first, read_csv, read_json, read_records, require
from lingshu_jax.evals.prompts import LETTERS
from lingshu_jax.evals.types import EvalItem, LoadOptions

MMLU_MEDICAL_SUBJECTS = (
    "anatomy",
    "clinical_knowledge",
    "college_biology",
    "college_medicine",
    "medical_genetics",
    "professional_medicine",
    "nutrition",
    "virology",
    "high_school_biology",
)


def _mmlu_rows(data_dir: str, subject: str) -> list[tuple[str, list, str, str]]:
    """(question, options, answer letter, location) of one subject, parquet or original CSV."""
    parquet = sorted(
        p
        for sub in (subject, os.path.join("data", subject))
        for p in _glob(data_dir, os.path.join(sub, "test-*.parquet"))
    )
    rows = []
    if parquet:
        for path in parquet:
            for loc, rec in read_records(path):
                answer = require(rec, "answer", loc)
                if not isinstance(answer, int) or not 0 <= answer < 4:
                    raise ValueError(f"{loc}: answer {answer!r} is not an index 0-3")
                rows.append(
                    (require(rec, "question", loc), list(require(rec, "choices", loc)), LETTERS[answer], loc)
                )
        return rows
    for sub in ("data/test", "test", "."):
        path = os.path.join(data_dir, sub, f"{subject}_test.csv")
        if os.path.isfile(path):
            for loc, rec in read_csv(path, header=False, fieldnames=["q", "A", "B", "C", "D", "answer"]):
                rows.append(
                    (
                        require(rec, "q", loc),
                        [require(rec, k, loc, True) for k in "ABCD"],
                        require(rec, "answer", loc),
                        loc,
                    )
                )
            return rows
    raise ValueError(
        f"{data_dir}: MMLU subject {subject!r} not found (<subject>/test-*.parquet or "
        f"data/test/{subject}_test.csv)"
    )


def _glob(root: str, pattern: str) -> list[str]:
    return glob.glob(os.path.join(root, pattern))


def load_mmlu_medical(data_dir: str, options: LoadOptions) -> list[EvalItem]:  # pylint: disable=unused-argument
    """MMLU test questions of the 9 medical subjects; category = subject."""
    items = []
    for subject in MMLU_MEDICAL_SUBJECTS:
        for i, (question, opts, answer, loc) in enumerate(_mmlu_rows(data_dir, subject)):
            items.append(
                mc_item(
                    "MMLU-medical", f"{subject}/{i}", question, opts, answer, loc, category=subject, sep="."
                )
                # MMLU.py:52 (its lines 52-54 raise: `context` is undefined; we use the prompt they build)
            )
    return check_unique(items, data_dir)


def _pubmedqa_original(path: str) -> list[EvalItem]:
    items = []
    for pmid, rec in read_json(path).items():
        loc = f"{path}[{pmid}]"
        decision = str(require(rec, "final_decision", loc)).lower()
        items.append(
            mc_item(
                "PubMedQA",
                str(pmid),
                require(rec, "QUESTION", loc),
                ["yes", "no", "maybe"],
                decision,
                loc,
                meta={"context": "\n".join(require(rec, "CONTEXTS", loc))},
                sep=".",
            )
        )
    return items


def load_pubmedqa(data_dir: str, options: LoadOptions) -> list[EvalItem]:  # pylint: disable=unused-argument
    """PubMedQA test set (500 questions)."""
    files = find_first(
        data_dir,
        (
            "data/test-*.parquet",
            "**/test-*.parquet",
            "test.jsonl",
            "test.json",
            "pqal_test_set.json",
            "*test*.json*",
        ),
        "PubMedQA test file",
    )
    items = []
    for path in files:
        if _is_pqal_dict(path):
            items.extend(_pubmedqa_original(path))
            continue
        for loc, rec in read_records(path):
            data = rec.get("data", rec)
            opts = require(data, "Options", loc)
            keys = sorted(opts)
            items.append(
                mc_item(
                    "PubMedQA",
                    str(rec.get("id", len(items))),
                    require(data, "Question", loc),
                    [opts[k] for k in keys],
                    require(data, "Correct Option", loc),
                    loc,
                    meta={"context": "\n".join(require(data, "Context", loc))},
                    sep=".",  # PubMedQA.py:44
                )
            )
    return check_unique(items, data_dir)


def _is_pqal_dict(path: str) -> bool:
    """True for the original PubMedQA layout: a JSON object {pmid: {QUESTION, CONTEXTS, ...}}."""
    if not path.endswith(".json"):
        return False
    with open(path, encoding="utf-8") as f:
        if not f.read(64).lstrip().startswith("{"):
            return False
    try:
        data = read_json(path)
    except ValueError:
        return False  # JSON lines, read as records
    return isinstance(data, dict) and all(isinstance(v, dict) and "QUESTION" in v for v in data.values())


def _cop_base(values: list, default: int) -> int:
    if any(v == 0 for v in values):
        return 0
    if any(v == 4 for v in values):
        return 1
    return default


def load_medmcqa(data_dir: str, options: LoadOptions) -> list[EvalItem]:  # pylint: disable=unused-argument
    """MedMCQA validation split (4,183 questions); category = subject_name."""
    files = find_first(
        data_dir,
        ("data/validation-*.parquet", "**/validation-*.parquet", "dev.json", "dev.jsonl", "validation.jsonl"),
        "MedMCQA validation file",
    )
    rows = [r for path in files for r in read_records(path)]
    base = _cop_base([rec.get("cop") for _, rec in rows], default=0 if files[0].endswith(".parquet") else 1)
    items = []
    for loc, rec in rows:
        cop = require(rec, "cop", loc)
        if not isinstance(cop, int) or not 0 <= cop - base < 4:
            raise ValueError(f"{loc}: cop {cop!r} is not an option index ({base}-{base + 3})")
        opts = [require(rec, k, loc, True) for k in ("opa", "opb", "opc", "opd")]
        items.append(
            mc_item(
                "MedMCQA",
                str(require(rec, "id", loc)),
                require(rec, "question", loc),
                opts,
                LETTERS[cop - base],
                loc,
                category=str(rec.get("subject_name") or ""),
            )
        )
    return check_unique(items, data_dir)


def _options_of(rec: dict, loc: str) -> list:
    """Options from an `options` dict/list, else from opa, opb, ... columns."""
    if isinstance(rec.get("options"), dict):
        opts = rec["options"]
        return [opts[k] for k in sorted(opts) if opts[k] not in (None, "")]
    if isinstance(rec.get("options"), list):
        return list(rec["options"])
    cols = [c for c in ("opa", "opb", "opc", "opd", "ope") if rec.get(c) not in (None, "")]
    if not cols:
        raise ValueError(f"{loc}: no options (expected an 'options' field or opa, opb, ... columns)")
    return [rec[c] for c in cols]


def _load_simple_mc(
    benchmark: str,
    data_dir: str,
    patterns: tuple[str, ...],
    answer_keys: tuple[str, ...],
    id_key: str | None = None,
    sep: str = ". ",
) -> list[EvalItem]:
    items = []
    for path in find_first(data_dir, patterns, f"{benchmark} data file"):
        for loc, rec in read_records(path):
            answer = next((rec[k] for k in answer_keys if rec.get(k) not in (None, "")), None)
            if answer is None:
                raise ValueError(f"{loc}: missing answer (one of {answer_keys})")
            item_id = str(rec[id_key]) if id_key and rec.get(id_key) is not None else str(len(items))
            items.append(
                mc_item(
                    benchmark,
                    item_id,
                    require(rec, "question", loc),
                    _options_of(rec, loc),
                    answer,
                    loc,
                    sep=sep,
                )
            )
    return check_unique(items, data_dir)


def load_medqa_usmle(data_dir: str, options: LoadOptions) -> list[EvalItem]:  # pylint: disable=unused-argument
    """MedQA-USMLE 4-option test set (1,273 questions)."""
    return _load_simple_mc(
        "MedQA_USMLE",
        data_dir,
        ("test.jsonl", "*test*.jsonl", "data/test-*.parquet", "**/test-*.parquet"),
        ("answer_idx", "answer"),
    )


def _medbullets(benchmark: str, n: str, data_dir: str) -> list[EvalItem]:
    return _load_simple_mc(
        benchmark,
        data_dir,
        (f"medbullets_op{n}.csv", "*.csv", "data/*.parquet", "**/*.parquet", "*.jsonl"),
        ("answer_idx", "answer"),
        sep=".",  # Medbullets_op4.py:36, Medbullets_op5.py:40
    )


def load_medbullets_op4(data_dir: str, options: LoadOptions) -> list[EvalItem]:  # pylint: disable=unused-argument
    """Medbullets, 4 options (308 questions)."""
    return _medbullets("Medbullets_op4", "4", data_dir)


def load_medbullets_op5(data_dir: str, options: LoadOptions) -> list[EvalItem]:  # pylint: disable=unused-argument
    """Medbullets, 5 options (308 questions)."""
    return _medbullets("Medbullets_op5", "5", data_dir)


def load_supergpqa(data_dir: str, options: LoadOptions) -> list[EvalItem]:  # pylint: disable=unused-argument
    """SuperGPQA questions of discipline "Medicine"; category = field (plus difficulty, subfield)."""
    items = []
    for path in find_first(
        data_dir, ("SuperGPQA-all.jsonl", "*.jsonl", "data/*.parquet", "**/*.parquet"), "SuperGPQA data file"
    ):
        for loc, rec in read_records(path):
            if rec.get("discipline") != "Medicine":
                continue
            items.append(
                mc_item(
                    "SuperGPQA",
                    str(require(rec, "uuid", loc)),
                    require(rec, "question", loc),
                    list(require(rec, "options", loc)),
                    require(rec, "answer_letter", loc),
                    loc,
                    category=str(rec.get("field", "")),
                    meta={"difficulty": rec.get("difficulty", ""), "subfield": rec.get("subfield", "")},
                    sep=".",  # SuperGPQA.py:44
                )
            )
    return check_unique(items, data_dir)
