"""Shared extraction pieces: boxed (nested, last), think stripping, the strict format check."""

import pytest

from lingshu_jax.evals.extract import (
    extract_boxed,
    has_think_answer_format,
    strip_think,
)


def test_boxed_keeps_nested_braces_and_takes_the_last_box():
    assert extract_boxed(r"first \boxed{1} then \boxed{\frac{1}{2}} done") == r"\frac{1}{2}"
    assert extract_boxed(r"\boxed{ {a}{b} }") == "{a}{b}"


def test_boxed_absent_or_unclosed_gives_none():
    assert extract_boxed("no box here") is None
    assert extract_boxed(r"\boxed{open {never closed}") is None


def test_think_block_never_supplies_the_answer():
    text = r"<think>maybe \boxed{A}, the answer is A</think> The answer is B"
    assert strip_think(text) == "The answer is B"
    assert strip_think("<think>truncated reasoning \\boxed{A}") == ""


@pytest.mark.parametrize(
    "text,style,ok",
    [
        ("<think>reason</think><answer>B</answer>", "either", True),
        ("<think>reason</think>\n<answer> B </answer>\n", "tag", True),
        ("<think>reason</think> so \\boxed{B}", "boxed", True),
        ("<think>reason</think> so \\boxed{B}", "tag", False),
        ("<think>reason</think><answer>B</answer> trailing", "tag", False),
        ("<think>reason</think><answer></answer>", "either", False),
        ("<think> </think><answer>B</answer>", "either", False),
        ("<answer>B</answer>", "either", False),
        ("preamble <think>r</think><answer>B</answer>", "either", False),
        ("<think>a</think><think>b</think><answer>B</answer>", "either", False),
        ("<think>r</think><answer>B</answer><answer>C</answer>", "tag", False),
        ("<think>r</think> \\boxed{}", "boxed", False),
        ("<think>r</think> \\boxed{A} or \\boxed{B}", "boxed", False),  # two boxes
        ("<think>r <answer>A</answer></think><answer>B</answer>", "either", False),  # tag in reasoning
        ("<think>r</think> \\boxed{B} <answer>B</answer>", "either", False),  # mixed forms
        (None, "either", False),
    ],
)
def test_has_think_answer_format(text, style, ok):
    assert has_think_answer_format(text, style) is ok


def test_has_think_answer_format_rejects_unknown_style():
    with pytest.raises(ValueError, match="answer_style"):
        has_think_answer_format("<think>a</think>b", "xml")
