"""MMMU, Health & Medicine subjects, validation split (MedEvalKit's "MMMU-Medical-val").

Format: the Hugging Face release `MMMU/MMMU`, one folder per subject with
`validation-*.parquet` (id, question, options as a Python list literal, image_1..image_7 as {bytes,
path}, answer, question_type "multiple-choice"/"open", subfield).

As MedEvalKit: only `image_1` is given to the model; the prompt is MMMU's ``(A) option`` listing; the
response is parsed with MMMU's official rules (`parse_multi_choice_response`, `parse_open_response`,
`eval_open`). MMMU picks a random letter when a response names none; we seed that choice with the
item id so scores are reproducible.
"""

from __future__ import annotations

import ast
import os
import random
import re

from lingshu_jax.evals import prompts
from lingshu_jax.evals.benchmarks.common import check_unique
from lingshu_jax.evals.datafiles import embedded_image, find_first, read_records, require
from lingshu_jax.evals.extract import extract_boxed, extract_tag, strip_think
from lingshu_jax.evals.types import EvalItem, ItemScore, LoadOptions

MEDICAL_SUBJECTS = (
    "Basic_Medical_Science",
    "Clinical_Medicine",
    "Diagnostics_and_Laboratory_Medicine",
    "Pharmacy",
    "Public_Health",
)


def _literal_list(text, where: str) -> list:
    if isinstance(text, list):
        return text
    try:
        value = ast.literal_eval(str(text))
    except (ValueError, SyntaxError) as exc:
        raise ValueError(f"{where}: options {text!r} is not a list literal") from exc
    if not isinstance(value, list):
        raise ValueError(f"{where}: options {text!r} is not a list")
    return value


def _item(subject: str, loc: str, rec: dict, options: LoadOptions) -> EvalItem:
    qtype = str(require(rec, "question_type", loc))
    opts = [str(o) for o in _literal_list(rec.get("options", "[]"), loc)]
    answer = str(require(rec, "answer", loc))
    image = rec.get("image_1")
    images = (embedded_image(image, f"{loc}:image_1", options),) if image else ()
    if qtype == "multiple-choice":
        letters = prompts.LETTERS[: len(opts)]
        if not opts or answer.strip().upper() not in letters:
            raise ValueError(f"{loc}: answer {answer!r} is not one of the option letters {letters}")
        kind, answer = "mc", answer.strip().upper()
    elif qtype == "open":
        kind = "open"
    else:
        raise ValueError(f"{loc}: question_type {qtype!r} is neither multiple-choice nor open")
    return EvalItem(
        id=str(require(rec, "id", loc)),
        benchmark="MMMU-Medical-val",
        category=subject,
        question_type=kind,
        images=images,
        question=str(require(rec, "question", loc)),
        answer=answer,
        options=tuple(opts),
        meta={"subfield": rec.get("subfield", "")},
    )


def load_mmmu_medical(data_dir: str, options: LoadOptions) -> list[EvalItem]:
    """The five Health & Medicine subjects; every subject folder must be present."""
    missing = [s for s in MEDICAL_SUBJECTS if not os.path.isdir(os.path.join(data_dir, s))]
    if missing:
        raise ValueError(f"{data_dir}: MMMU subject folders missing: {', '.join(missing)}")
    items = []
    for subject in MEDICAL_SUBJECTS:
        for path in find_first(
            os.path.join(data_dir, subject),
            ("validation-*.parquet", "validation*.parquet"),
            f"{subject} validation parquet",
        ):
            items.extend(_item(subject, loc, rec, options) for loc, rec in read_records(path))
    return check_unique(items, data_dir)


def mmmu_prompt(item: EvalItem, reasoning: bool) -> str:
    """MMMU's prompt as MedEvalKit builds it."""
    return prompts.mmmu_prompt(item.question, item.options, item.question_type == "mc", reasoning)


def parse_multi_choice(response: str, all_choices: list[str], index2ans: dict[str, str], seed: str) -> str:
    """MMMU's `parse_multi_choice_response`; its random fallback is seeded with `seed`."""
    response = response.strip()
    for char in [",", ".", "!", "?", ";", ":", "'"]:
        response = response.strip(char)
    response = " " + response + " "
    index_ans, with_brackets, candidates = True, False, []
    for choice in all_choices:
        if f"({choice})" in response:
            candidates.append(choice)
            with_brackets = True
    if not candidates:
        candidates = [c for c in all_choices if f" {c} " in response]
    if not candidates and len(response.split()) > 5:
        for index, ans in index2ans.items():
            if ans.lower() in response.lower():
                candidates.append(index)
                index_ans = False
    if not candidates:
        return random.Random(seed).choice(all_choices)
    if len(candidates) == 1:
        return candidates[0]
    if index_ans:
        pattern = "({})" if with_brackets else " {} "
        starts = [response.rfind(pattern.format(c)) for c in candidates]
    else:
        starts = [response.lower().rfind(index2ans[c].lower()) for c in candidates]
    return candidates[starts.index(max(starts))]


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
        return True
    except ValueError:
        return False


def _normalize(text: str) -> list:
    text = text.strip()
    if _is_number(text):
        return [round(float(text.replace(",", "")), 2)]
    text = text.lower()
    return [" " + text, text + " "] if len(text) == 1 else [text]


def _numbers(text: str) -> list[str]:
    commas = re.findall(r"-?\b\d{1,3}(?:,\d{3})+\b", text)
    scientific = re.findall(r"-?\d+(?:\.\d+)?[eE][+-]?\d+", text)
    simple = re.findall(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])", text)
    return commas + scientific + simple


def _key_responses(response: str) -> list[str]:
    response = response.strip().strip(".").lower()
    subs = re.split(r"\.\s(?=[A-Z])|\n", response)
    indicators = ["could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result "]
    keys = []
    for index, resp in enumerate(subs):
        if index == len(subs) - 1:
            indicators = indicators + ["="]
        shortest = None
        for indicator in indicators:
            if indicator in resp:
                tail = resp.split(indicator)[-1].strip()
                if shortest is None or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in [":", ",", ".", "!", "?", ";", "'"]:
            keys.append(shortest)
    return keys or [response]


def parse_open(response: str) -> list:
    """MMMU's `parse_open_response`: candidate strings and numbers, normalised, deduplicated."""
    keys = _key_responses(response)
    preds = list(keys)
    for key in keys:
        preds.extend(_numbers(key))
    out = []
    for pred in preds:
        out.extend(_normalize(pred))
    return list(dict.fromkeys(out))


def eval_open(gold, preds: list) -> bool:
    """MMMU's `eval_open`: a string answer inside a string prediction, or an equal number."""
    golds = gold if isinstance(gold, list) else [gold]
    norm_answers = [n for g in golds for n in _normalize(str(g))]
    for pred in preds:
        if isinstance(pred, str):
            if any(isinstance(a, str) and a in pred for a in norm_answers):
                return True
        elif pred in norm_answers:
            return True
    return False


def mmmu_score(item: EvalItem, response: str) -> ItemScore:
    """MMMU rules; <answer> then \\boxed{} extraction first, as MedEvalKit's MMMU runner."""
    text = strip_think(response or "")
    tagged = extract_tag(text, "answer")
    text = tagged if tagged is not None else text
    boxed = extract_boxed(text)
    text = boxed if boxed is not None else text
    if item.question_type == "mc":
        letters = list(prompts.LETTERS[: len(item.options)])
        pred = parse_multi_choice(text, letters, dict(zip(letters, item.options)), item.id)
        return ItemScore(correct=pred == item.answer, pred=pred)
    gold = item.answer
    if gold.startswith("["):
        try:
            gold = ast.literal_eval(gold)
        except (ValueError, SyntaxError):
            pass
    return ItemScore(correct=eval_open(gold, parse_open(text)), pred=text)
