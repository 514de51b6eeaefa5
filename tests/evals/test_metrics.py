"""Report metrics against the reference packages' own numbers; honest "not computed" otherwise."""

import importlib.util
import os
import shutil

import pytest

from lingshu_jax.evals import metrics as M

PREDS = [
    "Findings: The heart size is normal. Lungs are clear. Impression: No acute disease.",
    "Findings: Small left effusion. Impression: Effusion.",
]
REFS = [
    M.report_reference(
        "The heart size is normal. The lungs are clear.", "No acute cardiopulmonary abnormality."
    ),
    M.report_reference(
        "Mild cardiomegaly. Small left pleural effusion.", "Cardiomegaly with small effusion."
    ),
]


def test_report_tokens_follow_medevalkit_prep_reports():
    assert M.report_tokens("Heart  normal. Lungs") == ["heart", "normal", ".", "lungs"]
    assert M.report_reference("F", "I") == "Findings: F Impression: I."


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_bleu_and_rouge_equal_nltk_and_rouge_package_averages():
    from nltk.translate.bleu_score import sentence_bleu
    from rouge import Rouge

    got = M.report_metrics(PREDS, REFS, compute_meteor=False)
    for n in (1, 4):
        want = (
            sum(
                sentence_bleu([M.report_tokens(r)], M.report_tokens(p), weights=[1 / n] * n)
                for p, r in zip(PREDS, REFS)
            )
            / 2
        )
        assert got[f"bleu{n}"] == pytest.approx(want)
    want_l = sum(Rouge().get_scores(p.lower(), r.lower())[0]["rouge-l"]["f"] for p, r in zip(PREDS, REFS)) / 2
    assert got["rougel"] == pytest.approx(want_l)
    assert 0 < got["bleu4"] < got["bleu1"] < 1


def test_cider_d_equals_pycocoevalcap_on_the_same_tokens():
    from pycocoevalcap.cider.cider import Cider

    gts = {i: [" ".join(M.report_tokens(r))] for i, r in enumerate(REFS)}
    res = {i: [" ".join(M.report_tokens(p))] for i, p in enumerate(PREDS)}
    want, _ = Cider().compute_score(gts, res)
    assert M.cider_d(PREDS, REFS) == pytest.approx(float(want))


def test_empty_prediction_scores_zero_and_counts_in_the_average():
    got = M.report_metrics(["", REFS[1]], REFS, compute_meteor=False)
    alone = M.report_metrics([REFS[1]], [REFS[1]], compute_meteor=False)
    assert got["bleu1"] == pytest.approx(alone["bleu1"] / 2)
    assert got["rougel"] == pytest.approx(alone["rougel"] / 2)


@pytest.mark.skipif(shutil.which("java") is None, reason="no java for pycocoevalcap METEOR")
def test_meteor_is_pycocoevalcap_java_meteor_when_wordnet_is_absent(monkeypatch):
    # Reference: pycocoevalcap 1.2 `Meteor().compute_score` on these reports' tokens gave per-report
    # scores 0.47215249267790876 and 0.2951822429569779 (one JVM start is ~10-20 s, so it is not rerun here).
    monkeypatch.setattr(M, "_nltk_wordnet_available", lambda: False)
    value, impl = M.meteor(PREDS, REFS)
    assert impl == "meteor-1.5-java"
    assert value == pytest.approx((0.47215249267790876 + 0.2951822429569779) / 2, abs=1e-6)


def test_meteor_not_computed_without_wordnet_or_java(monkeypatch):
    monkeypatch.setattr(M, "_nltk_wordnet_available", lambda: False)
    monkeypatch.setattr(M.shutil, "which", lambda name: None)
    got = M.report_metrics(PREDS, REFS)
    assert got["meteor"] is None
    assert "java" in got["not_computed"]["meteor"]


def test_clinical_metrics_not_computed_without_models_each_with_a_reason():
    got = M.report_metrics(PREDS, REFS, compute_meteor=False)
    for name in ("rate", "sembscore", "radcliq"):
        assert got[name] is None
        assert got["not_computed"][name]


def test_rate_model_paths_without_the_package_say_so(monkeypatch):
    find_spec = importlib.util.find_spec  # hide the package, installed or not
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "RaTEScore" else find_spec(name, *a)
    )
    got = M.report_metrics(
        PREDS, REFS, rate_models={"bert_model": "/x", "eval_model": "/y"}, compute_meteor=False
    )
    assert got["rate"] is None and "not installed" in got["not_computed"]["rate"]


def test_user_supplied_clinical_scorers_are_used():
    got = M.report_metrics(
        PREDS,
        REFS,
        scorers={"sembscore": lambda p, r: 0.25, "radcliq": lambda p, r: 0.5},
        compute_meteor=False,
    )
    assert got["sembscore"] == 0.25 and got["radcliq"] == 0.5
    assert "sembscore" not in got["not_computed"] and "rate" in got["not_computed"]


def test_rate_and_green_are_averaged_over_the_non_empty_predictions_only():
    # cal_report_metrics.py:73-74 skips "" responses; :111-112 RaTE = sum / len(scores of the rest);
    # :115 GREEN over the same lists. BLEU still divides by all reports (:124).
    seen = {}

    def rate(p, r):
        seen["rate"] = list(p)
        return sum(len(x) for x in p) / len(p)

    got = M.report_metrics(
        ["abc", "", "abcde"],
        ["x", "y", "z"],
        scorers={"rate": rate, "green": lambda p, r: (0.5, 0.1)},
        compute_meteor=False,
    )
    assert seen["rate"] == ["abc", "abcde"] and got["rate"] == 4.0
    assert got["green"] == 0.5 and got["green_std"] == 0.1


def test_green_from_an_absent_checkpoint_is_a_clear_error_and_skipped_when_not_asked(tmp_path):
    with pytest.raises(ValueError, match="GREEN checkpoint directory .*nope.* not found"):
        M.report_metrics(PREDS, REFS, green_model=str(tmp_path / "nope"), compute_meteor=False)
    got = M.report_metrics(PREDS, REFS, compute_meteor=False)
    assert got["green"] is None and got["not_computed"]["green"].startswith("skipped")


def test_report_with_no_words_stops_medevalkit_mode_only():
    # cal_report_metrics.py:97: Rouge raises on "." (no words); "" is skipped before (:73-74).
    with pytest.raises(ValueError, match="cal_report_metrics.py:97"):
        M.report_metrics([".", ""], ["a b.", "c."], compute_meteor=False, scoring="medevalkit")
    assert M.report_metrics([".", ""], ["a b.", "c."], compute_meteor=False)["rougel"] == 0.0


def test_green_runs_the_green_score_package_on_the_non_empty_reports(tmp_path, monkeypatch):
    # cal_report_metrics.py:31,115: GREEN(checkpoint, output_dir)(references, predictions) -> mean, std, ...
    import importlib.machinery  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel
    import types  # pylint: disable=import-outside-toplevel

    calls = []

    class FakeGreen:
        def __init__(self, model_name, output_dir):
            calls.append((model_name, os.path.isdir(output_dir)))

        def __call__(self, refs, hyps):
            calls.append((list(refs), list(hyps)))
            return 0.75, 0.25, [0.5, 1.0], None, None

    module = types.ModuleType("green_score")
    module.GREEN, module.__spec__ = FakeGreen, importlib.machinery.ModuleSpec("green_score", None)
    monkeypatch.setitem(sys.modules, "green_score", module)
    ckpt = tmp_path / "GREEN-radllama2-7b"
    ckpt.mkdir()
    got = M.report_metrics(
        ["a b.", "", "c."], ["x.", "y.", "z."], green_model=str(ckpt), compute_meteor=False
    )
    assert (got["green"], got["green_std"]) == (0.75, 0.25)
    assert calls == [(str(ckpt), True), (["x.", "z."], ["a b.", "c."])]
