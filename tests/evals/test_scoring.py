"""Scoring rules with known answers, including the MedEvalKit defects we fix."""

import pytest

from lingshu_jax.evals.scoring import (
    open_metrics,
    pick_option,
    score_closed_exact,
    score_multiple_choice,
    score_open,
    score_yes_no,
    token_f1,
)

OPTIONS = ["Pancreas", "Liver", "Spleen", "Kidney"]


@pytest.mark.parametrize(
    "response,expected",
    [
        ("B", "B"),
        ("b", "B"),
        ("B. Liver", "B"),
        ("(B)", "B"),
        ("**B**", "B"),
        ("The answer is B.", "B"),
        ("Answer: B", "B"),
        (r"\boxed{B}", "B"),
        ("<answer>B</answer>", "B"),
        ("<think>A?</think>B", "B"),
        ("Liver", "B"),
        ("liver.", "B"),
        ("B\n\nBecause the liver...", "B"),
        ("Reasoning here.\n\nB. Liver", "B"),
    ],
)
def test_multiple_choice_reads_letter_or_option_text(response, expected):
    assert pick_option(response, OPTIONS) == expected
    assert score_multiple_choice(response, OPTIONS, expected).correct


def test_multiple_choice_falls_back_to_the_most_similar_option_line():
    # difflib ratio of "it is the spleen organ" is highest against "c. spleen"
    assert pick_option("it is the spleen organ", OPTIONS) == "C"


def test_empty_response_is_wrong_even_when_option_a_is_right():
    # MedEvalKit's fallback starts at index 0 and so credits an empty answer with option A.
    assert pick_option("", OPTIONS) is None
    assert not score_multiple_choice("", OPTIONS, "A").correct
    assert not score_multiple_choice("<think>only thinking</think>", OPTIONS, "A").correct


def test_yes_no_needs_exactly_one_of_the_words():
    assert score_yes_no("Yes.", "yes").correct
    assert score_yes_no("no", "No").correct
    assert not score_yes_no("yes or no", "yes").correct
    assert not score_yes_no("maybe", "no").correct


def test_yes_no_does_not_match_substrings_like_normal_or_not():
    # MedEvalKit: "no" in "normal" -> counted as answering "no".
    assert not score_yes_no("The study is normal", "no").correct
    assert not score_yes_no("I do not know", "no").correct
    assert score_yes_no("No, it is normal", "no").correct


def test_closed_exact_match_ignores_case_periods_and_spacing():
    assert score_closed_exact("Left.", "left").correct
    assert score_closed_exact("Answer: left lung", "Left Lung").correct
    assert not score_closed_exact("left lung", "left").correct


def test_token_f1_names_precision_and_recall_correctly():
    # MedEvalKit returns (f1, precision, recall) and unpacks it as (precision, recall, f1).
    got = token_f1("left frontal lobe mass", "left frontal lobe")
    assert got["precision"] == pytest.approx(3 / 4)
    assert got["recall"] == pytest.approx(1.0)
    assert got["f1"] == pytest.approx(2 * 0.75 / 1.75)
    assert token_f1("", "x") == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_open_metrics_match_nltk_and_rouge_reference_values():
    from nltk.translate.bleu_score import sentence_bleu
    from rouge import Rouge

    pred, ref = "left frontal lobe", "the left frontal lobe"
    got = open_metrics(pred, ref)
    assert got["bleu1"] == pytest.approx(sentence_bleu([ref.split()], pred.split(), weights=[1.0]))
    assert got["bleu1"] == pytest.approx(0.7165313105737893)  # 3/3 precision, brevity penalty exp(1 - 4/3)
    assert got["rougel"] == pytest.approx(Rouge().get_scores(pred, ref)[0]["rouge-l"]["f"])
    assert got["rougel"] == pytest.approx(2 * 1.0 * 0.75 / 1.75, abs=1e-6)
    assert got["em"] == 0.0


def test_open_metrics_of_an_empty_answer_are_zero_not_an_error():
    got = open_metrics("", "brain")
    assert all(v == 0.0 for v in got.values())


def test_open_rule_correctness_is_exact_match_after_extraction():
    assert score_open("The answer is Brain.", "brain").correct
    assert not score_open("brain stem", "brain").correct
