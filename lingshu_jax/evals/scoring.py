"""MedEvalKit's rule-based judges of one response, each with the fixes of the default mode switchable.

One function per MedEvalKit function (file:line at commit 9b12e3b, https://github.com/alibaba-damo-academy/
MedEvalKit); with `Scoring.of("medevalkit")` each returns what MedEvalKit's returns, bugs included; the
fixes (`lingshu_jax.evals.fixes.FIXES`) change only what their rows in docs/eval.md say.

- `boxed_or_none`: `mathruler.grader.extract_boxed_content` (content of the last closed \\boxed{...},
  else the string "None").
- `tag_content`: `utils/utils.py:232-256` `extract` (every <tag>...</tag> joined; the text itself when none).
- `parse_response`: `utils/utils.py:135-156`.
- `judge_judgement` / `judge_close_end` / `judge_open_end` / `judge_multi_choice`: `utils/utils.py:168-176`,
  `159-166`, `178-226`, `95-132`.

`score_multiple_choice`, `score_yes_no` and `score_closed_exact` are the default-mode judges on bare
(response, reference) pairs; the RL accuracy reward uses them.
"""

from __future__ import annotations

import difflib
import re
import sys
import warnings
from collections.abc import Sequence

from lingshu_jax.evals.extract import ANSWER_MARKERS, extract_boxed, strip_think
from lingshu_jax.evals.fixes import Scoring
from lingshu_jax.evals.prompts import LETTERS, format_choices
from lingshu_jax.evals.types import ItemScore

OPEN_METRIC_KEYS = (
    "em",
    "f1",
    "precision",
    "recall",
    "bleu1",
    "bleu2",
    "bleu3",
    "bleu4",
    "rouge1",
    "rouge2",
    "rougel",
)
DEFAULT = Scoring.of("default")


class MedEvalKitCrash(ValueError):
    """Raised in medevalkit mode where MedEvalKit itself raises (its run would stop there)."""


# ---------------------------------------------------------------- extraction


def without_think(text: str, scoring: Scoring) -> str:
    """Fix "think": the response without its <think> block (unchanged when it has no think tag)."""
    text = "" if text is None else str(text)
    if scoring.on("think") and ("<think>" in text or "</think>" in text):
        return strip_think(text)
    return text


def boxed_or_none(text: str) -> str:
    """`extract_boxed_content`: stripped content of the last closed \\boxed{...}, else "None"."""
    boxed = extract_boxed(text)
    return "None" if boxed is None else boxed


def tag_content(text: str | None, tag: str) -> str:
    """`utils.extract(text, tag)` (hard=True): each <tag>...</tag> body + a space, stripped; else `text`."""
    if not text:
        return ""
    start_tag, end_tag = f"<{tag}>", f"</{tag}>"
    found = ""
    start = text.find(start_tag)
    while start != -1:
        end = text.find(end_tag, start + len(start_tag))
        if end == -1:
            break
        found += text[start + len(start_tag) : end] + " "
        start = text.find(start_tag, end + len(end_tag))
    return found.strip() or text


def parse_response(response: str, scoring: Scoring) -> str:
    """`utils.parse_response`: lower case; \\boxed / <answer> content; text after each answer marker."""
    text = response.lower()
    if scoring.on("boxed_word"):
        boxed = extract_boxed(text)
        if boxed is not None:
            text = boxed
        elif "<answer>" in text:
            text = tag_content(text, "answer")
    elif "boxed" in text:
        text = boxed_or_none(text)
    elif "<answer>" in text:
        text = tag_content(text, "answer")
    for marker in ANSWER_MARKERS:
        if marker in text:
            text = text.split(marker)[-1]
            if scoring.on("marker_space"):
                text = text.strip()
    return text


# ---------------------------------------------------------------- yes / no and closed questions


def judge_judgement(answer: str, response: str, scoring: Scoring) -> tuple[bool, str]:
    """`utils.judge_judgement`: (correct, parsed response)."""
    answer = answer.lower()
    text = parse_response(response, scoring).replace("\n", "").replace(".", "")
    if scoring.on("yesno_words"):
        words = set(re.findall(r"[a-z]+", text))
        if ("yes" in words) != ("no" in words):
            return answer.strip() in words, text
        return False, text
    if ("yes" in text) ^ ("no" in text):
        return answer in text, text
    return False, text


def judge_close_end(answer: str, response: str, scoring: Scoring) -> tuple[bool, str]:
    """`utils.judge_close_end_vqa`: the parsed response, newlines and periods removed, equals the answer."""
    text = parse_response(response, scoring).replace("\n", "").replace(".", "")
    return text == answer.lower(), text


# ---------------------------------------------------------------- open-ended


def medevalkit_tokenize(text: str) -> list[str]:
    """`utils.tokenize`: lower case, " ." before periods, split on single spaces."""
    return text.lower().replace(".", " .").split(" ")


def sentence_bleu_n(pred: str, target: str, n: int) -> float:
    """`utils.bleu`: NLTK `sentence_bleu`, uniform weights up to n-grams, no smoothing."""
    from nltk.translate.bleu_score import sentence_bleu  # pylint: disable=import-outside-toplevel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(
            sentence_bleu([medevalkit_tokenize(target)], medevalkit_tokenize(pred), weights=[1 / n] * n)
        )


def rouge_scores(pred: str, target: str) -> dict[str, float]:
    """`utils.rouge`: ROUGE-1/2/L F of the `rouge` package; raises ValueError on an empty hypothesis."""
    from rouge import Rouge  # pylint: disable=import-outside-toplevel

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20000))  # `rouge` rebuilds each LCS recursively, per sentence
    try:
        scores = Rouge().get_scores(pred.lower(), target.lower())[0]
    finally:
        sys.setrecursionlimit(limit)
    names = (("rouge1", "rouge-1"), ("rouge2", "rouge-2"), ("rougel", "rouge-l"))
    return {key: scores[name]["f"] for key, name in names}


def rouge_f(pred: str, target: str) -> dict[str, float]:
    """`rouge_scores`, 0 on every key when the `rouge` package refuses an empty text."""
    try:
        return rouge_scores(pred, target)
    except ValueError:
        return {"rouge1": 0.0, "rouge2": 0.0, "rougel": 0.0}


def calculate_f1(prediction: str, ground_truth: str):
    """`utils.calculate_f1`, return values as MedEvalKit's: 0, or (0, 0, 0), or (f1, precision, recall)."""
    pred_tokens, truth_tokens = set(prediction.lower().split()), set(ground_truth.lower().split())
    common = pred_tokens & truth_tokens
    if not pred_tokens or not truth_tokens:
        return 0
    precision, recall = len(common) / len(pred_tokens), len(common) / len(truth_tokens)
    if precision + recall == 0:
        return 0, 0, 0
    return 2 * (precision * recall) / (precision + recall), precision, recall


def judge_open_end(answer: str, response: str, scoring: Scoring) -> tuple[dict[str, float], str]:
    """`utils.judge_open_end_vqa`: (metrics under MedEvalKit's keys, parsed response).

    medevalkit mode raises `MedEvalKitCrash` where MedEvalKit raises (fix "empty_open").
    """
    answer = answer.lower()
    text = parse_response(response, scoring)
    out = {f"bleu{n}": sentence_bleu_n(text, answer, n) for n in (1, 2, 3, 4)}
    out["em"] = float(text == answer)
    try:
        out.update(rouge_scores(text, answer))
    except ValueError as exc:
        if not scoring.on("empty_open"):
            raise MedEvalKitCrash(f"MedEvalKit raises here (utils/utils.py:187, rouge: {exc})") from exc
        out.update({"rouge1": 0.0, "rouge2": 0.0, "rougel": 0.0})
    prf = calculate_f1(text, answer)
    if prf == 0:
        if not scoring.on("empty_open"):
            raise MedEvalKitCrash("MedEvalKit raises here (utils/utils.py:192,217: cannot unpack int)")
        prf = (0, 0, 0)
    first, second, third = prf  # calculate_f1 order: f1, precision, recall
    if scoring.on("f1_names"):
        out.update({"f1": first, "precision": second, "recall": third})
    else:  # utils.py:192 unpacks them as precision, recall, f1
        out.update({"precision": first, "recall": second, "f1": third})
    return {k: float(v) for k, v in out.items()}, text


# ---------------------------------------------------------------- multiple choice


def judge_multi_choice(
    choices: Sequence[str], answer: str, response: str, scoring: Scoring
) -> tuple[bool, str]:
    """`utils.judge_multi_choice`: (correct, picked letter or parsed text). `choices`: lettered lines."""
    alphas = [chr(ord("a") + i) for i in range(len(choices))]
    response = response.lower()
    paragraphs = response.split("\n\n")
    if paragraphs[0] in alphas:
        response = paragraphs[0]
    elif paragraphs[-1].split(".")[0] in alphas:
        response = paragraphs[-1].split(".")[0]
    response = parse_response(response, scoring)
    lowered = [c.lower() for c in choices]
    response = response.strip().lower().replace("\n", "")
    head = response.split(".")[0].split(":")[-1]
    if scoring.on("marker_space"):  # utils.py:109 keeps the space after ":" too
        head = head.strip()
    answer = answer.strip().lower()
    if head == answer:
        return True, head.upper() if head in alphas else head
    if head in alphas:
        return lowered[ord(head) - ord("a")] == answer, head.upper()
    if head in lowered:
        return answer in alphas and head == lowered[ord(answer) - ord("a")], head
    best, best_ratio = 0, 0.0
    for i, choice in enumerate(lowered):
        ratio = difflib.SequenceMatcher(None, choice, response).ratio()
        if ratio > best_ratio:
            best, best_ratio = i, ratio
    if best_ratio == 0 and scoring.on("mc_empty"):
        return False, ""
    return alphas[best] == answer or lowered[best] == answer, alphas[best].upper()


# ---------------------------------------------------------------- default-mode judges on bare pairs


def score_multiple_choice(response: str, options: Sequence[str], answer: str) -> ItemScore:
    """Default mode: options as texts ("A. text" lines are built), `answer` a letter."""
    if not options:
        raise ValueError("score_multiple_choice: no options")
    text = tag_content(without_think(response, DEFAULT), "answer")
    correct, pred = judge_multi_choice(format_choices(options), answer, text, DEFAULT)
    return ItemScore(correct=correct, pred=pred)


def score_yes_no(response: str, answer: str) -> ItemScore:
    """Default mode yes/no (`judge_judgement`)."""
    correct, pred = judge_judgement(answer.strip(), without_think(response, DEFAULT), DEFAULT)
    return ItemScore(correct=correct, pred=pred)


def score_closed_exact(response: str, answer: str) -> ItemScore:
    """Default mode closed exact match (`judge_close_end`)."""
    correct, pred = judge_close_end(answer.strip(), without_think(response, DEFAULT), DEFAULT)
    return ItemScore(correct=correct, pred=pred)


__all__ = [
    "LETTERS",
    "OPEN_METRIC_KEYS",
    "MedEvalKitCrash",
    "boxed_or_none",
    "calculate_f1",
    "judge_close_end",
    "judge_judgement",
    "judge_multi_choice",
    "judge_open_end",
    "parse_response",
    "rouge_f",
    "score_closed_exact",
    "score_multiple_choice",
    "score_yes_no",
    "tag_content",
    "without_think",
]
