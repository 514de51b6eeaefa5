"""Benchmark-level scores in both modes, judge on and off, against MedEvalKit's `cal_metrics` line by line.

Responses: tests/evals/fixtures/responses/<benchmark>.jsonl on the loader fixtures. Expected values are
derived in the comments from MedEvalKit (commit 9b12e3b): utils/VQA_RAD/VQA_RAD.py:56-145,
utils/PATH_VQA/PATH_VQA.py:54-144, utils/SLAKE/SLAKE.py:77-179, utils/MedQA_USMLE/MedQA_USMLE.py:55-71,
utils/MMMU/eval_val.py:16-86 + eval_utils.py, utils/Metrics_Compute/cal_report_metrics.py:41-146.
The judge is a stand-in that calls every answer correct ("0"), so its verdicts are known.
"""

import os

import pytest

from lingshu_jax.evals.aggregate import judged_items, vqa_counts
from lingshu_jax.evals.fixes import Scoring
from lingshu_jax.evals.runner import score_predictions

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
MEK, DEFAULT = Scoring.of("medevalkit"), Scoring.of("default")


class AlwaysCorrect:
    model = "always-correct"

    def __init__(self):
        self.asked = []

    def judge_many(self, triples):
        self.asked.extend(triples)
        return [True] * len(triples)


def _score(fixtures_dir, name, mode, judge=None):
    preds = os.path.join(fixtures_dir, "responses", f"{name}.jsonl")
    return score_predictions(
        name, fixtures_dir, preds, judge=judge, scoring=mode, report_kwargs={"compute_meteor": False}
    )


def _blocks(m):
    return [(m[b]["right"], m[b]["total"], m[b]["acc"]) for b in ("total", "closed", "open")]


# PathVQA responses: 0 (yes) "Yes, the keratin pearl is boxed."; 1 (no) "No, there are none.";
# 2 (granuloma) "granuloma with giant cells".
# medevalkit, judge off: item 0 -> parse_response sees "boxed" -> "None" -> neither yes nor no -> wrong;
#   item 1 right; item 2 open, em False. total 1/3, closed 1/2, open right 0 -> acc 0/1/1 = 0.
# default: item 0 right (fix boxed_word): total 2/3, closed 2/2.
# judge on (every open answer correct): medevalkit PATH_VQA.py:123-125 zeroes total and closed, then adds
#   the judged open: total 1/3, closed 0/2, open 1/1 -> acc 1/1/1 = 1. default: 2 + 1 = 3/3, closed 2/2.
PATHVQA = [
    (None, "medevalkit", [(1, 3, 1 / 3), (1, 2, 0.5), (0, 1, 0.0)]),
    (None, "default", [(2, 3, 2 / 3), (2, 2, 1.0), (0, 1, 0.0)]),
    ("judge", "medevalkit", [(1, 3, 1 / 3), (0, 2, 0.0), (1, 1, 1.0)]),
    ("judge", "default", [(3, 3, 1.0), (2, 2, 1.0), (1, 1, 1.0)]),
]

# SLAKE responses: 11 OPEN Brain "Brain"; 12 CLOSED Yes "Yes, it is."; 13 CLOSED Left "Left.";
# 14 CLOSED 是 "是".
# medevalkit, judge off: 11 em ("brain" == "brain"); 12: "Yes" not in ["yes","no"] (SLAKE.py:138), so
#   judge_close_end: "yes, it is" != "yes" -> wrong; 13, 14 right. total 3/4, closed 2/3, open 1/1.
# default: 12 by the yes/no rule -> right: total 4/4, closed 3/3.
# judge on: medevalkit judges all 4 (SLAKE.py:120-124); total = closed rule 2 (:153) + 4 = 6 -> 1.5;
#   closed = 2 + 3 = 5 -> 5/3; open = 1. default: judge only the open one: total 3 + 1 = 4, closed 3.
SLAKE = [
    (None, "medevalkit", [(3, 4, 0.75), (2, 3, 2 / 3), (1, 1, 1.0)]),
    (None, "default", [(4, 4, 1.0), (3, 3, 1.0), (1, 1, 1.0)]),
    ("judge", "medevalkit", [(6, 4, 1.5), (5, 3, 5 / 3), (1, 1, 1.0)]),
    ("judge", "default", [(4, 4, 1.0), (3, 3, 1.0), (1, 1, 1.0)]),
]


@pytest.mark.parametrize("name,table", [("PATH_VQA", PATHVQA), ("SLAKE", SLAKE)])
def test_vqa_benchmark_counts_follow_cal_metrics(fixtures_dir, name, table):
    for judge, mode, want in table:
        m = _score(fixtures_dir, name, mode, AlwaysCorrect() if judge else None)
        got = _blocks(m)
        for (r, t, a), (wr, wt, wa) in zip(got, want):
            assert (r, t) == (wr, wt) and a == pytest.approx(wa, abs=1e-9), (judge, mode, got)


def test_pathvqa_open_metrics_keep_medevalkit_names_only_in_medevalkit_mode(fixtures_dir):
    # "granuloma with giant cells" vs "granuloma": common 1, precision 1/4, recall 1/1, f1 0.4;
    # utils.py:192 stores (precision, recall, f1) = (0.4, 0.25, 1.0).
    mek = _score(fixtures_dir, "PATH_VQA", "medevalkit")["open"]
    fixed = _score(fixtures_dir, "PATH_VQA", "default")["open"]
    assert (mek["precision"], mek["recall"], mek["f1"]) == pytest.approx((0.4, 0.25, 1.0), abs=1e-9)
    assert (fixed["precision"], fixed["recall"], fixed["f1"]) == pytest.approx((0.25, 1.0, 0.4), abs=1e-9)


def test_vqa_rad_stops_in_medevalkit_mode_on_an_empty_open_answer_and_scores_by_default(fixtures_dir):
    # responses: 0 (no) "The bone cortex looks normal."; 1 (yes) "<think>... or not? no ...</think>Yes";
    # 2 (brain) "Answer: brain"; 3 (left frontal lobe) "The answer is" -> "" -> Rouge raises (utils.py:187).
    with pytest.raises(ValueError, match="VQA_RAD item '3': MedEvalKit raises here"):
        _score(fixtures_dir, "VQA_RAD", "medevalkit")
    m = _score(fixtures_dir, "VQA_RAD", "default")
    # default: 0 wrong (no word yes/no), 1 right (think removed), 2 right (" brain" stripped), 3 wrong.
    assert _blocks(m) == [(2, 4, 0.5), (1, 2, 0.5), (1, 2, 0.5)]
    judge = AlwaysCorrect()
    mj = _score(fixtures_dir, "VQA_RAD", "default", judge)
    # VQA_RAD.py:125-135: total = closed rule 1 + judged open 2; the judge sees the lower-cased,
    # stripped response before parse_response (VQA_RAD.py:96,119), with the lower-cased answer.
    assert _blocks(mj) == [(3, 4, 0.75), (1, 2, 0.5), (2, 2, 1.0)]
    assert [t[1:] for t in judge.asked] == [
        ("brain", "answer: brain"),
        ("left frontal lobe", "the answer is"),
    ]


def test_open_accuracy_divided_twice_in_medevalkit_mode():
    # VQA_RAD.py:139 acc = right/total, then :142-144 divides every open key but right/total again.
    rows = [
        {"split": "open", "rule_correct": True, "metrics": {"em": 1.0}},
        {"split": "open", "rule_correct": False, "metrics": {"em": 0.0}},
        {"split": "closed", "rule_correct": True, "metrics": {}},
    ]
    assert vqa_counts("VQA_RAD", rows, False, MEK)["open"]["acc"] == pytest.approx(0.25)
    assert vqa_counts("VQA_RAD", rows, False, DEFAULT)["open"]["acc"] == pytest.approx(0.5)
    assert vqa_counts("VQA_RAD", rows, False, MEK)["open"]["em"] == pytest.approx(0.5)
    only = Scoring.of("medevalkit", with_fixes=("open_acc_once",))
    assert vqa_counts("VQA_RAD", rows, False, only)["open"]["acc"] == pytest.approx(0.5)


def test_slake_sends_every_question_to_the_judge_only_in_medevalkit_mode():
    splits = ["open", "closed", "closed"]
    assert judged_items("SLAKE", splits, MEK) == [0, 1, 2]
    assert judged_items("SLAKE", splits, DEFAULT) == [0]
    assert judged_items("VQA_RAD", splits, MEK) == judged_items("PATH_VQA", splits, MEK) == [0]


# MedQA responses: 0 (A) "" -> utils.py:129-130 most similar index stays 0 -> "a" == "a": right;
# 1 (B) "<think>The answer is B.</think>" -> "answer is" -> " b.</think>" -> "b": right. 2/2.
# default: 0 wrong (fix mc_empty), 1 -> think removed -> "" -> wrong. 0/2.
# MMMU responses: mc "A", "(B)", "The answer is D.", "<answer>A</answer>" all right; open (500)
# "Two tablets of 250 mg each make 500 mg." -> eval_val.py:53 keeps the string, eval_open iterates its
# characters: never right (4/5). default parses it: "500" -> 500.0 right (5/5).
@pytest.mark.parametrize(
    "name,mek_acc,default_acc", [("MedQA_USMLE", 1.0, 0.0), ("MMMU-Medical-val", 0.8, 1.0)]
)
def test_multiple_choice_and_mmmu_totals(fixtures_dir, name, mek_acc, default_acc):
    assert _score(fixtures_dir, name, "medevalkit")["total"]["acc"] == pytest.approx(mek_acc, abs=1e-9)
    assert _score(fixtures_dir, name, "default")["total"]["acc"] == pytest.approx(default_acc, abs=1e-9)


def test_report_metrics_follow_cal_report_metrics(fixtures_dir):
    # cal_report_metrics.py:80-100: per report, tokens lower()/" ."/split(" ")/no "", NLTK BLEU with
    # weights [1], [.5,.5], [1/3]*3, [.25]*4; ROUGE of `rouge` on lower-cased texts; :124-141 divide by
    # all reports. medevalkit scores the response as it is (with its <think> block); default removes it.
    from nltk.translate.bleu_score import sentence_bleu  # pylint: disable=import-outside-toplevel
    from rouge import Rouge  # pylint: disable=import-outside-toplevel

    from lingshu_jax.evals.benchmarks import load_benchmark  # pylint: disable=import-outside-toplevel
    from lingshu_jax.evals.runner import read_predictions  # pylint: disable=import-outside-toplevel
    from lingshu_jax.evals.types import LoadOptions  # pylint: disable=import-outside-toplevel

    items = load_benchmark("IU_XRAY", fixtures_dir, LoadOptions(need_images=False))
    preds = read_predictions(os.path.join(fixtures_dir, "responses", "IU_XRAY.jsonl"))
    tok = lambda s: [t for t in s.lower().replace(".", " .").split(" ") if t != ""]
    for mode, strip in (("medevalkit", False), ("default", True)):
        got = _score(fixtures_dir, "IU_XRAY", mode)["report"]
        texts = [preds[it.id].split("</think>")[-1] if strip else preds[it.id] for it in items]
        refs = [it.answer for it in items]
        bleu4 = sum(sentence_bleu([tok(r)], tok(p), weights=[0.25] * 4) for p, r in zip(texts, refs)) / 2
        rougel = (
            sum(Rouge().get_scores(p.lower(), r.lower())[0]["rouge-l"]["f"] for p, r in zip(texts, refs)) / 2
        )
        assert got["bleu4"] == pytest.approx(bleu4, abs=1e-9) and got["rougel"] == pytest.approx(
            rougel, abs=1e-9
        )
        assert got["not_computed"]["green"].startswith("skipped")


def test_vqa_rad_judge_counts_are_the_same_in_both_modes_but_open_accuracy():
    # VQA_RAD.py:124-135: total = closed rule count + judged-correct open; open right = judged (no bug
    # there besides :142-144's second division of the open accuracy).
    rows = [
        {"split": "closed", "rule_correct": True, "metrics": {}},
        {"split": "closed", "rule_correct": False, "metrics": {}},
        {"split": "open", "rule_correct": True, "judge": False, "metrics": {"em": 1.0}},
        {"split": "open", "rule_correct": False, "judge": True, "metrics": {"em": 0.0}},
        {"split": "open", "rule_correct": False, "judge": None, "metrics": {"em": 0.0}},  # failed call
    ]
    mek, fixed = vqa_counts("VQA_RAD", rows, True, MEK), vqa_counts("VQA_RAD", rows, True, DEFAULT)
    assert mek["total"] == fixed["total"] == {"total": 5, "right": 2, "acc": 0.4}
    assert mek["closed"] == fixed["closed"] == {"total": 2, "right": 1, "acc": 0.5}
    assert mek["open"]["right"] == fixed["open"]["right"] == 1
    assert mek["open"]["acc"] == pytest.approx(1 / 9) and fixed["open"]["acc"] == pytest.approx(1 / 3)
    assert mek["open"]["em"] == fixed["open"]["em"] == pytest.approx(1 / 3)
