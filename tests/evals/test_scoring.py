"""MedEvalKit's judges, case by case, in both scoring modes.

Every expected value below is what MedEvalKit's code (commit 9b12e3b) computes, followed line by line:
https://github.com/alibaba-damo-academy/MedEvalKit/blob/9b12e3b/utils/utils.py (parse_response :135-156,
judge_close_end_vqa :159-166, judge_judgement :168-175, judge_open_end_vqa :178-207, calculate_f1
:210-226, judge_multi_choice :95-132, extract :232-256; mathruler's extract_boxed_content).
Each row: (inputs, medevalkit result, default result, the fix that makes them differ or None).
medevalkit mode must equal the first, the default mode the second, and the medevalkit mode with only the
named fix on must equal the second (so the difference is that fix and nothing else).
"""

import pytest
from nltk.translate.bleu_score import sentence_bleu
from rouge import Rouge

from lingshu_jax.evals.fixes import FIX_NAMES, FIXES, Scoring
from lingshu_jax.evals.scoring import (
    MedEvalKitCrash,
    judge_close_end,
    judge_judgement,
    judge_multi_choice,
    judge_open_end,
    parse_response,
    score_closed_exact,
    score_multiple_choice,
    score_yes_no,
    tag_content,
)

MEK, DEFAULT = Scoring.of("medevalkit"), Scoring.of("default")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _modes(fn, args, mek, default, fix):
    assert fn(*args, MEK) == mek
    assert fn(*args, DEFAULT) == default
    if fix is None:
        assert mek == default
    else:
        assert mek != default and fn(*args, Scoring.of("medevalkit", with_fixes=(fix,))) == default


# parse_response (:135-156): lower(); "boxed" in -> extract_boxed_content; elif "<answer>" in -> extract;
# then for each marker in order, text.split(marker)[-1] (not stripped).
PARSE_CASES = [
    ("B", "b", "b", None),
    ("The answer is B", " b", "b", "marker_space"),
    ("**Answer**: Lung", " lung", "lung", "marker_space"),  # "**answer**:" then "**answer**" no longer in
    ("Final answer: left", " left", "left", "marker_space"),  # "answer:" matches before "final answer"
    ("The answer is: B", ": b", ": b", None),  # after "answer is" -> ": b"; "answer:" is not in it
    ("the lesion is boxed in red", "None", "the lesion is boxed in red", "boxed_word"),
    ("so \\boxed{Left Lung}.", "left lung", "left lung", None),
    ("\\boxed{a} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}", "\\frac{1}{2}", None),  # the last one
    ("\\boxed{unclosed", "None", "\\boxed{unclosed", "boxed_word"),
    ("<answer> A </answer> x <answer>b</answer>", "a  b", "a  b", None),  # bodies + " ", then strip
    (
        "<answer></answer>no tags inside",
        "<answer></answer>no tags inside",
        "<answer></answer>no tags inside",
        None,
    ),
    ("<think>answer: a</think>b", " a</think>b", "a</think>b", "marker_space"),  # <think> is not its job
]


@pytest.mark.parametrize("response,mek,default,fix", PARSE_CASES)
def test_parse_response_follows_utils_135(response, mek, default, fix):
    _modes(parse_response, (response,), mek, default, fix)


def test_tag_content_is_utils_extract_with_hard_fallback():
    assert tag_content("<judge>0</judge>", "judge") == "0"
    assert tag_content("plain 1", "judge") == "plain 1"  # no tag: the text itself (hard=True)
    assert tag_content(None, "judge") == "" and tag_content("<judge>1", "judge") == "<judge>1"


# judge_judgement (:168-175): answer.lower(); parse; drop "\n" and "."; ('yes' in r) ^ ('no' in r) and
# answer in r, as substrings. The VQA benchmarks call it on a response already lower-cased and stripped.
JUDGEMENT_CASES = [
    (("yes", "Yes."), True, True, None),
    (("no", "No, there are none."), True, True, None),
    (("no", "The study is normal"), True, False, "yesno_words"),  # "no" in "normal"
    (("no", "I do not know"), True, False, "yesno_words"),
    (("yes", "Both eyes look fine"), True, False, "yesno_words"),  # "yes" in "eyes"
    (("yes", "yes or no"), False, False, None),
    (("yes", "Yes, the mass is boxed."), False, True, "boxed_word"),  # -> "None": neither word
    (("no", "Answer: No"), True, True, None),
]


@pytest.mark.parametrize("args,mek,default,fix", JUDGEMENT_CASES)
def test_judge_judgement_follows_utils_168(args, mek, default, fix):
    _modes(lambda a, r, s: judge_judgement(a, r, s)[0], args, mek, default, fix)


# judge_close_end_vqa (:159-166): parse, drop "\n" and ".", compare with answer.lower() by ==.
CLOSE_CASES = [
    (("left", "Left."), True, True, None),
    (("left", "left lung"), False, False, None),
    (("left lung", "Answer: left lung"), False, True, "marker_space"),  # " left lung" != "left lung"
    (("Left", "Left"), True, True, None),  # answer lower-cased at :160
    (("left", " Left"), False, False, None),  # SLAKE does not strip the response (SLAKE.py:109-113)
    (("lung", "\\boxed{Lung}"), True, True, None),
]


@pytest.mark.parametrize("args,mek,default,fix", CLOSE_CASES)
def test_judge_close_end_follows_utils_159(args, mek, default, fix):
    _modes(lambda a, r, s: judge_close_end(a, r, s)[0], args, mek, default, fix)


# judge_multi_choice (:95-132) with MedQA's lettered lines (MedQA_USMLE.py:43-47), answer a letter.
CHOICES = ["A. Escherichia coli", "B. Staphylococcus aureus", "C. Candida albicans", "D. Proteus mirabilis"]
MC_CASES = [
    (("B", "B"), True, True, None),  # :97 first paragraph is a letter
    (("B", "B. Staphylococcus aureus"), True, True, None),  # :108 text before the first "."
    (("C", "Reasoning first.\n\nC. Candida"), True, True, None),  # :99 last paragraph's first sentence
    # :109 keeps the space after ":" (" b" is no letter); the similarity fallback then picks line A
    (("B", "The answer is: B"), False, True, "marker_space"),
    (("B", "Answer: B"), True, True, None),  # parse_response leaves " b", stripped at :106
    (("A", "Escherichia coli"), True, True, None),  # :129 most similar option line
    (("A", ""), True, False, "mc_empty"),  # :79,87: nothing similar -> index 0 -> "a" == answer
    (("B", ""), False, False, None),
    (("C", "<think>The answer is C.</think>"), True, False, "think"),  # reasoning supplies "c"
    (("B", "\\boxed{B}"), True, True, None),
    (("D", "(D)"), False, False, None),  # "(d)" is neither a letter nor an option: similarity picks A
]


@pytest.mark.parametrize("args,mek,default,fix", MC_CASES)
def test_judge_multi_choice_follows_utils_95(args, mek, default, fix):
    def run(answer, response, scoring):
        return judge_multi_choice(CHOICES, answer, tag_content(response, "answer"), scoring)[0]

    if fix == "think":  # the think fix lives before judge_multi_choice: the benchmark scorer applies it
        from lingshu_jax.evals.scoring import without_think  # pylint: disable=import-outside-toplevel

        def run(answer, response, scoring):
            text = tag_content(without_think(response, scoring), "answer")
            return judge_multi_choice(CHOICES, answer, text, scoring)[0]

    _modes(run, args, mek, default, fix)


def _expected_open(answer: str, text: str) -> dict:
    """judge_open_end_vqa (:178-207) on an already parsed, non-empty text, by MedEvalKit's lines."""
    answer = answer.lower()
    tok = lambda s: s.lower().replace(".", " .").split(" ")
    out = {f"bleu{n}": sentence_bleu([tok(answer)], tok(text), weights=[1 / n] * n) for n in (1, 2, 3, 4)}
    out["em"] = float(text == answer)
    r = Rouge().get_scores(text.lower(), answer.lower())[0]
    out.update(rouge1=r["rouge-1"]["f"], rouge2=r["rouge-2"]["f"], rougel=r["rouge-l"]["f"])
    p_set, t_set = set(text.split()), set(answer.split())
    common = p_set & t_set
    precision, recall = len(common) / len(p_set), len(common) / len(t_set)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    # :192 unpacks calculate_f1's (f1, precision, recall) as (precision, recall, f1)
    out["mek"] = {"precision": f1, "recall": precision, "f1": recall} if precision + recall else {}
    out["fixed"] = {"precision": precision, "recall": recall, "f1": f1} if precision + recall else {}
    return out


@pytest.mark.parametrize(
    "answer,response,parsed_mek,parsed_default",
    [
        ("left frontal lobe", "left frontal lobe mass", "left frontal lobe mass", "left frontal lobe mass"),
        ("brain", "Brain.", "brain.", "brain."),
        ("right lung", "Answer: right lung", " right lung", "right lung"),
        ("pleural effusion", "there is a small pleural effusion on the left", None, None),
    ],
)
def test_judge_open_end_follows_utils_178_to_1e9(answer, response, parsed_mek, parsed_default):
    parsed_mek = parsed_mek or response.lower()
    parsed_default = parsed_default or response.lower()
    for scoring, parsed, key in ((MEK, parsed_mek, "mek"), (DEFAULT, parsed_default, "fixed")):
        got, text = judge_open_end(answer, response, scoring)
        assert text == parsed
        want = _expected_open(answer, parsed)
        for k in ("bleu1", "bleu2", "bleu3", "bleu4", "em", "rouge1", "rouge2", "rougel"):
            assert got[k] == pytest.approx(want[k], abs=1e-9), k
        for k, v in want[key].items():
            assert got[k] == pytest.approx(v, abs=1e-9), k


def test_open_answer_with_no_words_stops_medevalkit_and_scores_zero_by_default():
    # :181 BLEU passes, :187 Rouge raises "Hypothesis is empty." (and :192 could not unpack calculate_f1's 0)
    with pytest.raises(MedEvalKitCrash, match="utils/utils.py:187"):
        judge_open_end("brain", "The answer is", MEK)
    got, text = judge_open_end("brain", "The answer is", DEFAULT)
    assert text == "" and set(got.values()) == {0.0}
    only = Scoring.of("medevalkit", with_fixes=("empty_open",))
    assert judge_open_end("brain", "The answer is", only)[0] == {**got}


def test_every_fix_has_a_medevalkit_location_and_reason():
    assert len(FIX_NAMES) == len(set(FIX_NAMES)) == len(FIXES)
    for fix in FIXES:
        assert fix.where and fix.medevalkit and fix.ours and fix.why
    assert Scoring.of("DEFAULT").fixes == frozenset(FIX_NAMES) and not MEK.fixes
    with pytest.raises(ValueError, match="unknown fix 'nope'"):
        Scoring.of("default", without=("nope",))
    with pytest.raises(ValueError, match="scoring mode 'x' not in"):
        Scoring.of("x")


def test_rl_facing_judges_are_the_default_mode():
    assert score_multiple_choice("B", ["x", "y"], "B").correct
    assert not score_multiple_choice("", ["x", "y"], "A").correct
    assert score_yes_no("Yes.", "yes").correct and not score_yes_no("normal", "no").correct
    assert score_closed_exact("Answer: left lung", "Left Lung").correct
    assert not score_closed_exact("<think>left</think>right", "left").correct
