"""Rule-based scoring of one response: multiple choice, yes/no, closed exact match, open-ended metrics.

Follows MedEvalKit's `utils/utils.py` (`judge_multi_choice`, `judge_judgement`, `judge_close_end_vqa`,
`judge_open_end_vqa`) with these deliberate fixes:

- yes/no: the response must contain exactly one of the *words* "yes" / "no" (MedEvalKit tests
  substrings, so "normal", "not" or "know" count as "no").
- multiple choice: an empty response is wrong (MedEvalKit's similarity fallback starts at option A and
  so credits an empty answer when A is right); "(B)", "**B**" and "[B]" are read as the letter B; an
  answer equal to an option's text selects that option.
- open-ended: precision / recall / F1 carry their own names (MedEvalKit's `calculate_f1` returns
  (f1, precision, recall) and its caller unpacks them as (precision, recall, f1)); an empty response
  scores 0 instead of raising.

The most-similar-option fallback is MedEvalKit's: `difflib.SequenceMatcher(None, option, response)
.ratio()` against each lower-cased lettered option line ("a. text"); the first maximum wins.
"""

from __future__ import annotations

import difflib
import re
import sys
import warnings
from collections.abc import Sequence

from lingshu_jax.evals.extract import extract_answer
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


def normalize_short(text: str) -> str:
    """Lower case, newlines and periods removed, whitespace collapsed (MedEvalKit's closed-question norm)."""
    text = (text or "").lower().replace("\n", " ").replace(".", "")
    return " ".join(text.split())


# ---------------------------------------------------------------- yes / no and closed questions


def yes_no_label(text: str) -> str:
    """ "yes" or "no" when exactly one of the two words occurs in the text, else ""."""
    words = set(re.findall(r"[a-z]+", (text or "").lower()))
    has_yes, has_no = "yes" in words, "no" in words
    if has_yes == has_no:
        return ""
    return "yes" if has_yes else "no"


def score_yes_no(response: str, answer: str) -> ItemScore:
    """Correct only if exactly one of yes/no appears in the extracted answer and it is the reference."""
    label = yes_no_label(extract_answer(response))
    return ItemScore(correct=bool(label) and label == answer.strip().lower(), pred=label)


def score_closed_exact(response: str, answer: str) -> ItemScore:
    """Closed question: normalised extracted answer equals the normalised reference."""
    pred = normalize_short(extract_answer(response))
    return ItemScore(correct=pred == normalize_short(answer), pred=pred)


# ---------------------------------------------------------------- multiple choice

_BARE_LETTER = re.compile(r"^[\s*_(\[]*([a-z])[\s*_)\].:]*$")


def _bare_letter(text: str, n_options: int) -> str | None:
    """The letter if `text` is just a letter, possibly wrapped: "b", "(b)", "**b**", "b." ."""
    m = _BARE_LETTER.match(text)
    if m and ord(m.group(1)) - ord("a") < n_options:
        return m.group(1)
    return None


def _option_text_key(text: str) -> str:
    return " ".join(text.lower().strip().rstrip(".").split())


def pick_option(response: str, options: Sequence[str]) -> str | None:
    """The option letter (upper case) a response picks, or None when it picks nothing.

    Steps (MedEvalKit `judge_multi_choice`): a bare letter as the first paragraph or as the first
    sentence of the last paragraph; then answer extraction; the text before the first "." and after
    the last ":" as a letter; the whole answer as an option's text; else the most similar option line.
    """
    n = len(options)
    raw = (response or "").lower()
    paragraphs = raw.split("\n\n")
    early = _bare_letter(paragraphs[0], n) or _bare_letter(paragraphs[-1].split(".")[0], n)
    if early:
        return early.upper()
    text = extract_answer(raw).lower().replace("\n", "").strip()
    if not text:
        return None
    head = text.split(".")[0].split(":")[-1]
    letter = _bare_letter(head, n) or _bare_letter(text, n)
    if letter:
        return letter.upper()
    keys = [_option_text_key(o) for o in options]
    if _option_text_key(text) in keys:
        return LETTERS[keys.index(_option_text_key(text))]
    lines = [c.lower() for c in format_choices(options)]
    best, best_ratio = 0, 0.0
    for i, line in enumerate(lines):
        ratio = difflib.SequenceMatcher(None, line, text).ratio()
        if ratio > best_ratio:
            best, best_ratio = i, ratio
    return LETTERS[best]


def score_multiple_choice(response: str, options: Sequence[str], answer: str) -> ItemScore:
    """Multiple choice: the picked letter must be `answer` (a letter)."""
    if not options:
        raise ValueError("score_multiple_choice: no options")
    pred = pick_option(response, options)
    return ItemScore(correct=pred is not None and pred == answer.strip().upper(), pred=pred or "")


# ---------------------------------------------------------------- open-ended


def medevalkit_tokenize(text: str) -> list[str]:
    """MedEvalKit's BLEU tokenisation: lower case, " ." before periods, split on single spaces."""
    return text.lower().replace(".", " .").split(" ")


def sentence_bleu_n(pred: str, target: str, n: int) -> float:
    """NLTK `sentence_bleu` with uniform weights up to n-grams and no smoothing (as MedEvalKit)."""
    from nltk.translate.bleu_score import sentence_bleu  # pylint: disable=import-outside-toplevel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(
            sentence_bleu([medevalkit_tokenize(target)], medevalkit_tokenize(pred), weights=[1.0 / n] * n)
        )


def rouge_f(pred: str, target: str) -> dict[str, float]:
    """ROUGE-1/2/L F of the `rouge` package (as MedEvalKit); 0 when either side has no words."""
    from rouge import Rouge  # pylint: disable=import-outside-toplevel

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20000))  # `rouge` rebuilds each LCS recursively, per sentence
    try:
        scores = Rouge().get_scores(pred.lower(), target.lower())[0]
    except ValueError:  # empty hypothesis / reference
        return {"rouge1": 0.0, "rouge2": 0.0, "rougel": 0.0}
    finally:
        sys.setrecursionlimit(limit)
    return {
        "rouge1": scores["rouge-1"]["f"],
        "rouge2": scores["rouge-2"]["f"],
        "rougel": scores["rouge-l"]["f"],
    }


def token_f1(pred: str, target: str) -> dict[str, float]:
    """Set-of-whitespace-tokens precision, recall and F1 (MedEvalKit's definition, names fixed)."""
    p_tokens, t_tokens = set(pred.lower().split()), set(target.lower().split())
    common = p_tokens & t_tokens
    if not p_tokens or not t_tokens or not common:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    precision, recall = len(common) / len(p_tokens), len(common) / len(t_tokens)
    return {"precision": precision, "recall": recall, "f1": 2 * precision * recall / (precision + recall)}


def open_metrics(pred: str, answer: str) -> dict[str, float]:
    """Exact match, token F1, BLEU-1..4 and ROUGE-1/2/L F of an extracted answer vs the reference."""
    pred, answer = pred.strip(), answer.strip()
    out: dict[str, float] = {"em": float(normalize_short(pred) == normalize_short(answer))}
    out.update(token_f1(pred, answer))
    for n in (1, 2, 3, 4):
        out[f"bleu{n}"] = sentence_bleu_n(pred, answer, n) if pred else 0.0
    out.update(rouge_f(pred, answer))
    return out


def score_open(response: str, answer: str) -> ItemScore:
    """Open question: rule-based correctness is exact match; the other metrics ride along."""
    pred = extract_answer(response)
    metrics = open_metrics(pred, answer)
    return ItemScore(correct=bool(metrics["em"]), pred=pred, metrics=metrics)
