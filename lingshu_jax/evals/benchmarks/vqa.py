"""Closed/open medical VQA: VQA-RAD, SLAKE, PathVQA.

Published formats read here:
- VQA-RAD: the Hugging Face release MedEvalKit loads (`flaviagiammarino/vqa-rad`: `data/test-*.parquet`
  with `image` {bytes, path}, `question`, `answer`; 451 test questions), or the original OSF release
  (`VQA_RAD Dataset Public.json` + `VQA_RAD Image Folder/`; test = phrase_type test_freeform/test_para).
- SLAKE: `test.json` (records with img_name, question, answer, answer_type OPEN/CLOSED, q_lang en/zh,
  qid, modality, content_type) + `imgs/` (MedEvalKit's local layout of `BoKelvin/SLAKE`).
- PathVQA: the Hugging Face release (`flaviagiammarino/path-vqa`: `data/test-*.parquet`, 6,719 rows).

Closed/open split (MedEvalKit): VQA-RAD and PathVQA call a question closed when its lower-cased answer
is yes/no; SLAKE follows its answer_type (OPEN / CLOSED) and prompts closed questions with the
short-answer prompt; which rule scores a SLAKE closed question is decided in `common.slake_score`.
"""

from __future__ import annotations

import os

from lingshu_jax.evals import prompts
from lingshu_jax.evals.benchmarks.common import check_unique
from lingshu_jax.evals.datafiles import (
    embedded_image,
    find_first,
    image_path,
    read_json_records,
    read_records,
    require,
)
from lingshu_jax.evals.types import EvalItem, LoadOptions

_TEST_PARQUET = ("data/test-*.parquet", "**/test-*.parquet", "**/test.parquet")
_VQA_RAD_JSON = "VQA_RAD Dataset Public.json"


def _yes_no_type(answer: str) -> str:
    """Scoring routing of VQA-RAD and PathVQA (VQA_RAD.py:95,99; PATH_VQA.py:93,97)."""
    return "yesno" if answer.strip().lower() in ("yes", "no") else "open"


def _prompt_kind(benchmark: str, answer: str) -> str:
    """Prompt routing: VQA-RAD lower-cases the answer (VQA_RAD.py:43-44), PathVQA not (PATH_VQA.py:43)."""
    key = answer.lower() if benchmark == "VQA_RAD" else answer
    return "yesno" if key in ("yes", "no") else "open"


def _load_hf_parquet(benchmark: str, data_dir: str, options: LoadOptions) -> list[EvalItem]:
    """Rows {image, question, answer} of the test parquet shards, ids = running row index."""
    items = []
    for path in find_first(data_dir, _TEST_PARQUET, "test parquet file"):
        for loc, rec in read_records(path):
            question = str(require(rec, "question", loc))
            answer = str(require(rec, "answer", loc))
            image = embedded_image(require(rec, "image", loc), f"{loc}:image", options)
            items.append(
                EvalItem(
                    id=str(len(items)),
                    benchmark=benchmark,
                    category="",
                    question_type=_yes_no_type(answer),
                    images=(image,),
                    question=question,
                    answer=answer,
                    meta={"prompt_kind": _prompt_kind(benchmark, answer)},
                )
            )
    return check_unique(items, data_dir)


def _load_vqa_rad_osf(data_dir: str, options: LoadOptions) -> list[EvalItem]:
    """The original OSF json: test questions are phrase_type test_freeform / test_para."""
    path = os.path.join(data_dir, _VQA_RAD_JSON)
    image_dir = os.path.join(data_dir, "VQA_RAD Image Folder")
    items = []
    for loc, rec in read_json_records(path):
        if str(rec.get("phrase_type", "")) not in ("test_freeform", "test_para"):
            continue
        answer = str(require(rec, "answer", loc))
        items.append(
            EvalItem(
                id=str(require(rec, "qid", loc)),
                benchmark="VQA_RAD",
                category=str(rec.get("image_organ", "")),
                question_type=_yes_no_type(answer),
                images=(image_path(image_dir, str(require(rec, "image_name", loc)), loc, options),),
                question=str(require(rec, "question", loc)),
                answer=answer,
                meta={
                    "answer_type": rec.get("answer_type", ""),
                    "prompt_kind": _prompt_kind("VQA_RAD", answer),
                },
            )
        )
    return check_unique(items, path)


def load_vqa_rad(data_dir: str, options: LoadOptions) -> list[EvalItem]:
    """VQA-RAD test set from the HF parquet release, else from the original OSF json."""
    if os.path.exists(os.path.join(data_dir, _VQA_RAD_JSON)):
        return _load_vqa_rad_osf(data_dir, options)
    return _load_hf_parquet("VQA_RAD", data_dir, options)


def load_path_vqa(data_dir: str, options: LoadOptions) -> list[EvalItem]:
    """PathVQA test set from the HF parquet release."""
    return _load_hf_parquet("PATH_VQA", data_dir, options)


def load_slake(data_dir: str, options: LoadOptions) -> list[EvalItem]:
    """SLAKE `test.json` + `imgs/`, English and Chinese questions (as MedEvalKit: 2,094 items)."""
    path = os.path.join(data_dir, "test.json")
    items = []
    for i, (loc, rec) in enumerate(read_json_records(path)):
        answer = str(require(rec, "answer", loc))
        answer_type = str(require(rec, "answer_type", loc))
        if answer_type not in ("OPEN", "CLOSED"):
            raise ValueError(f"{loc}: answer_type {answer_type!r} is neither OPEN nor CLOSED")
        lang = str(rec.get("q_lang", "en"))
        if lang not in ("en", "zh"):
            raise ValueError(f"{loc}: q_lang {lang!r} is neither en nor zh")
        qtype = "open" if answer_type == "OPEN" else "closed"
        items.append(
            EvalItem(
                id=str(rec.get("qid", i)),
                benchmark="SLAKE",
                category=lang,
                question_type=qtype,
                images=(
                    image_path(
                        os.path.join(data_dir, "imgs"), str(require(rec, "img_name", loc)), loc, options
                    ),
                ),
                question=str(require(rec, "question", loc)),
                answer=answer,
                meta={
                    "lang": lang,
                    "answer_type": answer_type,
                    "modality": rec.get("modality", ""),
                    "content_type": rec.get("content_type", ""),
                },
            )
        )
    return check_unique(items, path)


def slake_prompt(item: EvalItem, reasoning: bool) -> str:
    """SLAKE: OPEN -> open prompt, CLOSED -> short-answer prompt, in the question's language."""
    lang = item.meta.get("lang", "en")
    if item.meta.get("answer_type") == "OPEN":
        return prompts.open_prompt(item.question, reasoning, lang)
    return prompts.closed_prompt(item.question, reasoning, lang)
