"""MMMU, Health & Medicine subjects: validation split ("MMMU-Medical-val") and test split ("MMMU-Medical-test").

Format: the Hugging Face release `MMMU/MMMU`, one folder per subject with `validation-*.parquet` /
`test-*.parquet` (id, question, options as a Python list literal, image_1..image_7 as {bytes, path},
answer, question_type "multiple-choice"/"open", subfield). The test split has no public answers ("?").

As MedEvalKit (utils/MMMU/data_utils.py, eval_val.py, eval_utils.py at commit 9b12e3b):
- images: only `image_1` goes to the model, and none when the options name more than one image
  (`process_single_sample`, data_utils.py:87-100). The question keeps its `<image 1>` tags.
- prompt (`construct_prompt`, data_utils.py:136-185): "\n{question}\n\n{options}\n\n        " and the
  multiple-choice instruction, options one per line as "(A) text"; open questions "\n{question}\n\n
  " and the short-answer instruction (see `prompts.mmmu_prompt`).
- response: <answer> content first, then \boxed{} content (eval_val.py:41-44); multiple choice parsed with
  `parse_multi_choice_response` (eval_utils.py:10-69), open with `parse_open_response` + `eval_open`
  (eval_utils.py:129-223; medevalkit mode reproduces eval_val.py:53, see the fix "mmmu_open_parse").
- the reference is the dataset's answer string as it is.
MMMU picks a random letter when a response names none (`random.choice`, eval_utils.py:47, global state
seeded once per benchmark); that draw cannot be reproduced outside MedEvalKit's process, so ours is seeded
by the item id in both modes.

The test split is generated and written as MMMU's submission file (`{id: prediction}`), not scored.
"""

from __future__ import annotations

import ast
import os
import random
import re

from lingshu_jax.evals import prompts
from lingshu_jax.evals.benchmarks.common import check_unique
from lingshu_jax.evals.datafiles import embedded_image, find_first, read_records, require
from lingshu_jax.evals.fixes import Scoring
from lingshu_jax.evals.scoring import boxed_or_none, tag_content, without_think
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


def record_item(subject: str, loc: str, rec: dict, options: LoadOptions, split: str) -> EvalItem:
    """One MMMU parquet row as an `EvalItem` (`split`: "validation" or "test")."""
    qtype = str(require(rec, "question_type", loc))
    opts = [str(o) for o in _literal_list(rec.get("options", "[]"), loc)]
    answer = str(require(rec, "answer", loc))
    image = rec.get("image_1")
    option_images = sum(len(re.findall("<img='(.*?)'>", o)) for o in opts)
    if option_images > 1:  # data_utils.py:95-97: no image at all
        image = None
    images = (embedded_image(image, f"{loc}:image_1", options),) if image else ()
    if qtype == "multiple-choice":
        letters = prompts.LETTERS[: len(opts)]
        if not opts:
            raise ValueError(f"{loc}: multiple-choice question without options")
        if split == "validation" and answer not in letters:
            raise ValueError(f"{loc}: answer {answer!r} is not one of the option letters {letters}")
        kind = "mc"
    elif qtype == "open":
        kind = "open"
    else:
        raise ValueError(f"{loc}: question_type {qtype!r} is neither multiple-choice nor open")
    return EvalItem(
        id=str(require(rec, "id", loc)),
        benchmark="MMMU-Medical-val" if split == "validation" else "MMMU-Medical-test",
        category=subject,
        question_type=kind,
        images=images,
        question=str(require(rec, "question", loc)),
        answer=answer,
        options=tuple(opts),
        meta={"subfield": rec.get("subfield", "")},
    )


def load_mmmu_medical(data_dir: str, options: LoadOptions, split: str = "validation") -> list[EvalItem]:
    """The five Health & Medicine subjects of one split; every subject folder must be present."""
    missing = [s for s in MEDICAL_SUBJECTS if not os.path.isdir(os.path.join(data_dir, s))]
    if missing:
        raise ValueError(f"{data_dir}: MMMU subject folders missing: {', '.join(missing)}")
    items = []
    for subject in MEDICAL_SUBJECTS:
        for path in find_first(
            os.path.join(data_dir, subject),
            (f"{split}-*.parquet", f"{split}*.parquet"),
            f"{subject} {split} parquet",
        ):
            items.extend(record_item(subject, loc, rec, options, split) for loc, rec in read_records(path))
    return check_unique(items, data_dir)


def load_mmmu_medical_test(data_dir: str, options: LoadOptions) -> list[EvalItem]:
    """The test split (no public answers: predictions are written for submission, not scored)."""
    return load_mmmu_medical(data_dir, options, split="test")


def mmmu_prompt(item: EvalItem, reasoning: bool) -> str:
    """MMMU's prompt as MedEvalKit builds it."""
    return prompts.mmmu_prompt(item.question, item.options, item.question_type == "mc", reasoning)


def parse_multi_choice(response: str, all_choices: list[str], index2ans: dict[str, str], seed: str) -> str:
    """MMMU's `parse_multi_choice_response`; its random fallback is seeded with `seed`."""
    response = "" if response is None else response
    if "<answer>" in response:  # eval_utils.py:16-19
        response = tag_content(response, "answer")
    elif "\\boxed" in response:
        response = boxed_or_none(response)
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
                if not shortest or len(tail) < len(shortest):  # "" counts as unset (eval_utils.py:149)
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


def mmmu_response(response: str, scoring: Scoring) -> str:
    """eval_val.py:41-44: <answer> content, then \\boxed{} content."""
    text = without_think(response, scoring)
    if "<answer>" in text:
        text = tag_content(text, "answer")
    boxed = boxed_or_none(text)
    return boxed if boxed != "None" else text


def mmmu_prediction(item: EvalItem, response: str, scoring: Scoring):
    """The parsed prediction: a letter (multiple choice) or MMMU's candidate list (open)."""
    text = mmmu_response(response, scoring)
    if item.question_type == "mc":
        letters = list(prompts.LETTERS[: len(item.options)])
        return parse_multi_choice(text, letters, dict(zip(letters, item.options)), item.id)
    if item.benchmark == "MMMU-Medical-test" or scoring.on("mmmu_open_parse"):  # eval_test.py:45 parses
        return parse_open(text)
    return text  # eval_val.py:53 keeps the string


def mmmu_score(item: EvalItem, response: str, scoring: Scoring) -> ItemScore:
    """MMMU rules (eval_utils.py:182-223), after MedEvalKit's extraction."""
    pred = mmmu_prediction(item, response, scoring)
    if item.question_type == "mc":
        return ItemScore(correct=pred == item.answer, pred=pred)
    return ItemScore(correct=eval_open(item.answer, pred), pred=mmmu_response(response, scoring))
