"""Report-generation metrics (MIMIC-CXR, CheXpert Plus, IU-Xray), computed offline or not at all.

What MedEvalKit's `utils/Metrics_Compute/cal_report_metrics.py` does, and what we do:

- Reference: ``f"Findings: {findings} Impression: {impression}."`` (`report_reference`).
- Tokens: lower case, " ." before periods, split on spaces, empty tokens dropped (`report_tokens`).
- BLEU-1..4: NLTK `sentence_bleu` per report, no smoothing, averaged over all reports. Same here.
- ROUGE-1/2/L: F of the `rouge` package per report, averaged. Same here.
- CIDEr: MedEvalKit calls `cidereval.cider`, i.e. the original CIDEr with *COCO-val* IDF and the Java
  PTB tokenizer; that package and its IDF table are not on PyPI, so we report CIDEr-D of
  `pycocoevalcap` with IDF from the references, on the tokens above (key "cider"). The two are not
  comparable; `notes` says so in every result.
- METEOR: MedEvalKit uses NLTK's `single_meteor_score`, which needs the WordNet corpus. We use it when
  WordNet is already on disk (never downloaded); else METEOR 1.5 of `pycocoevalcap` (Java) when `java`
  is on PATH; else METEOR is not computed and `not_computed["meteor"]` says why.
- RaTEScore (cal_report_metrics.py:111-112): mean over the non-empty predictions only. Computed when the
  `RaTEScore` package is installed and the caller gives both local model paths.
- GREEN (cal_report_metrics.py:115): `green_score.GREEN(checkpoint)(references, predictions)` over the
  non-empty predictions, mean and std; computed only from a local checkpoint directory (`green_model`),
  a clear error when that directory is absent; otherwise listed as skipped.
- SembScore and RadCliQ (not in MedEvalKit's script) only through caller-supplied scorer callables.
- Empty predictions (exactly "") are left out of every sum (cal_report_metrics.py:73-74), and BLEU, ROUGE
  and METEOR are divided by the number of all reports (:118-141), as MedEvalKit does.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence

from lingshu_jax.evals.fixes import Scoring, as_scoring
from lingshu_jax.evals.scoring import MedEvalKitCrash, rouge_scores

Scorer = Callable[[Sequence[str], Sequence[str]], float]
CLINICAL_METRICS = ("rate", "green", "sembscore", "radcliq")


def report_reference(findings: str, impression: str) -> str:
    """The reference report text, as MedEvalKit builds it."""
    return f"Findings: {findings} Impression: {impression}."


def report_tokens(text: str) -> list[str]:
    """MedEvalKit's `prep_reports` tokenisation of one report."""
    return [t for t in str(text).lower().replace(".", " .").split(" ") if t != ""]


def _bleu_all(preds: list[list[str]], refs: list[list[str]]) -> dict[str, float]:
    from nltk.translate.bleu_score import sentence_bleu  # pylint: disable=import-outside-toplevel

    totals = {f"bleu{n}": 0.0 for n in (1, 2, 3, 4)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for pred, ref in zip(preds, refs):
            if not pred:
                continue
            for n in (1, 2, 3, 4):
                totals[f"bleu{n}"] += float(sentence_bleu([ref], pred, weights=[1 / n] * n))
    return {k: v / max(len(preds), 1) for k, v in totals.items()}


def cider_d(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus CIDEr-D (pycocoevalcap; IDF from the references) on MedEvalKit's tokens."""
    from pycocoevalcap.cider.cider import Cider  # pylint: disable=import-outside-toplevel

    gts = {i: [" ".join(report_tokens(r))] for i, r in enumerate(references)}
    res = {i: [" ".join(report_tokens(p))] for i, p in enumerate(predictions)}
    score, _ = Cider().compute_score(gts, res)
    return float(score)


def _nltk_wordnet_available() -> bool:
    try:
        import nltk  # pylint: disable=import-outside-toplevel

        nltk.data.find("corpora/wordnet")
        return True
    except (ImportError, LookupError):
        return False


def meteor(predictions: Sequence[str], references: Sequence[str]) -> tuple[float | None, str]:
    """Mean METEOR and the implementation used ("nltk" or "meteor-1.5-java"), or (None, reason)."""
    preds = [report_tokens(p) for p in predictions]
    refs = [report_tokens(r) for r in references]
    if _nltk_wordnet_available():
        from nltk.translate.meteor_score import single_meteor_score  # pylint: disable=import-outside-toplevel

        total = sum(single_meteor_score(r, p) for p, r in zip(preds, refs) if p)
        return total / max(len(preds), 1), "nltk"
    if shutil.which("java") is None:
        return None, "NLTK WordNet data not on disk and no `java` on PATH for pycocoevalcap's METEOR 1.5"
    try:
        from pycocoevalcap.meteor.meteor import Meteor  # pylint: disable=import-outside-toplevel
    except ImportError:
        return None, "NLTK WordNet data not on disk and pycocoevalcap is not installed"
    # one line per text on the Java side's stdin: no newlines inside tokens
    gts = {i: [" ".join(" ".join(r).split()) or "."] for i, r in enumerate(refs)}
    res = {i: [" ".join(" ".join(p).split()) or "."] for i, p in enumerate(preds)}
    scorer = Meteor()
    try:
        _, per_item = scorer.compute_score(gts, res)
    except (OSError, ValueError, RuntimeError) as exc:  # the Java subprocess failed
        return None, f"pycocoevalcap METEOR failed: {exc}"
    finally:
        _close_meteor(scorer)
    per_item = [0.0 if not p else float(s) for s, p in zip(per_item, preds)]
    return sum(per_item) / max(len(per_item), 1), "meteor-1.5-java"


def _close_meteor(scorer) -> None:
    """Ends the METEOR JVM now (and frees its lock, which its `__del__` would otherwise wait on)."""
    scorer.meteor_p.kill()
    scorer.meteor_p.wait()
    if scorer.lock.locked():
        scorer.lock.release()


def ratescore(
    predictions: Sequence[str], references: Sequence[str], bert_model: str, eval_model: str
) -> float:
    """Mean RaTEScore with local model paths (needs the `RaTEScore` package; nothing is downloaded)."""
    from RaTEScore import RaTEScore  # pylint: disable=import-outside-toplevel

    scores = RaTEScore(bert_model=bert_model, eval_model=eval_model).compute_score(
        list(predictions), list(references)
    )
    return float(sum(scores) / len(scores))


def check_green_model(path: str) -> None:
    """A clear error when the GREEN checkpoint directory or the `green_score` package is missing."""
    if not os.path.isdir(path):
        raise ValueError(
            f"GREEN checkpoint directory {path!r} not found: download StanfordAIMI/GREEN-radllama2-7b "
            "yourself and pass its local path (nothing is downloaded at run time)"
        )
    if importlib.util.find_spec("green_score") is None:
        raise ValueError("GREEN needs the `green_score` package (pip install green-score), not installed")


def green(predictions: Sequence[str], references: Sequence[str], model_path: str) -> tuple[float, float]:
    """(mean, std) of GREEN from a local checkpoint (cal_report_metrics.py:31,115)."""
    check_green_model(model_path)
    from green_score import GREEN  # pylint: disable=import-outside-toplevel

    with tempfile.TemporaryDirectory() as scratch:  # GREEN writes a results file into output_dir
        mean, std, *_ = GREEN(model_path, output_dir=scratch)(list(references), list(predictions))
    return float(mean), float(std)


def _clinical(predictions, references, rate_models, scorers, green_model=None) -> tuple[dict, dict]:
    """Model-based metrics over the non-empty predictions (MedEvalKit averages RaTE and GREEN there)."""
    values: dict[str, float | None] = {k: None for k in CLINICAL_METRICS}
    reasons: dict[str, str] = {}
    kept = [(p, r) for p, r in zip(predictions, references) if p != ""]
    predictions, references = [p for p, _ in kept], [r for _, r in kept]
    scorers = dict(scorers or {})
    if "green" not in scorers and green_model:
        scorers["green"] = lambda p, r: green(p, r, green_model)
    if "rate" not in scorers and rate_models:
        if importlib.util.find_spec("RaTEScore") is not None:
            scorers["rate"] = lambda p, r: ratescore(
                p, r, rate_models["bert_model"], rate_models["eval_model"]
            )
        else:
            reasons["rate"] = "model paths given but the RaTEScore package is not installed"
    for name in CLINICAL_METRICS:
        if name in scorers and not predictions:
            reasons[name] = "no non-empty prediction"
        elif name in scorers:
            value = scorers[name](list(predictions), list(references))
            if name == "green" and isinstance(value, tuple):
                values[name], values["green_std"] = float(value[0]), float(value[1])
            else:
                values[name] = float(value)
        elif name not in reasons:
            reasons[name] = {
                "rate": "needs RaTE-NER and BioLORD checkpoints: rate_models={'bert_model', 'eval_model'}",
                "green": "skipped: needs a local GREEN-radllama2-7b checkpoint (--green_model PATH)",
                "sembscore": "needs a CheXbert checkpoint and CXR-Report-Metric: pass a scorer callable",
                "radcliq": "needs CheXbert, RadGraph, BERTScore (CXR-Report-Metric): pass a scorer callable",
            }[name]
    return values, reasons


def report_metrics(
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    rate_models: Mapping[str, str] | None = None,
    scorers: Mapping[str, Scorer] | None = None,
    compute_meteor: bool = True,
    green_model: str | None = None,
    scoring: Scoring | str | None = None,
) -> dict:
    """All report metrics of a benchmark; values in [0, 1] (CIDEr-D in [0, 10]); None when not computed.

    Args:
      predictions: generated reports (answer extraction already applied by the caller, if any).
      references: reference reports (`report_reference`).
      rate_models: {"bert_model": path, "eval_model": path} for RaTEScore.
      scorers: {"rate"|"green"|"sembscore"|"radcliq": fn(predictions, references) -> float}
        ("green" may return (mean, std)).
      compute_meteor: set False to skip METEOR (it starts a JVM when NLTK WordNet is absent).
      green_model: local GREEN checkpoint directory.
      scoring: medevalkit mode raises where MedEvalKit raises (ROUGE of a prediction with no words).
    """
    scoring = as_scoring(scoring)
    if len(predictions) != len(references):
        raise ValueError(f"report_metrics: {len(predictions)} predictions vs {len(references)} references")
    preds = [report_tokens(p) for p in predictions]
    refs = [report_tokens(r) for r in references]
    out: dict = {"n": len(predictions)}
    out.update(_bleu_all(preds, refs))
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougel": 0.0}
    for i, (p, r) in enumerate(zip(predictions, references)):
        if p == "":
            continue
        try:
            scores = rouge_scores(p, r)
        except ValueError as exc:  # a prediction with no words
            if not scoring.on("empty_open"):
                raise MedEvalKitCrash(
                    f"report {i}: MedEvalKit raises here (cal_report_metrics.py:97, rouge: {exc})"
                ) from exc
            continue
        for k, v in scores.items():
            totals[k] += v
    out.update({k: v / max(len(predictions), 1) for k, v in totals.items()})
    kept = [(p, r) for p, r in zip(predictions, references) if p != ""]
    out["cider"] = cider_d([p for p, _ in kept], [r for _, r in kept]) if kept else 0.0
    not_computed: dict[str, str] = {}
    out["meteor"], impl = meteor(predictions, references) if compute_meteor else (None, "skipped by caller")
    if out["meteor"] is None:
        not_computed["meteor"] = impl
    else:
        out["meteor_impl"] = impl
    values, reasons = _clinical(predictions, references, rate_models, scorers, green_model)
    out.update(values)
    not_computed.update(reasons)
    out["not_computed"] = not_computed
    out["notes"] = (
        "cider is CIDEr-D (pycocoevalcap, IDF from these references); MedEvalKit reports the "
        "original CIDEr with COCO-val IDF (cidereval), so the two are not comparable"
    )
    return out
