"""Reward registry, the strict format reward and the accuracy reward on crafted strings."""

import numpy as np
import pytest

from lingshu_jax.evals.extract import has_think_answer_format
from lingshu_jax.rl import rewards
from lingshu_jax.rl.rewards import combine_rewards, format_reward, get_reward, register_reward


# ---------------------------------------------------------------- registry
def test_register_get_and_duplicate_names():
    @register_reward("test_length", overwrite=True)
    def length(completions, references):
        return [len(c) for c in completions]

    assert get_reward("test_length") is length
    assert "test_length" in rewards.list_rewards()
    with pytest.raises(ValueError, match="already registered"):
        register_reward("test_length")(lambda c, r: [0.0] * len(c))
    with pytest.raises(ValueError, match="unknown reward 'nope'"):
        get_reward("nope")


def test_combine_rewards_weights_and_reports_each_reward():
    register_reward("test_one", overwrite=True)(lambda c, r: [1.0] * len(c))
    register_reward("test_ref", overwrite=True)(lambda c, r: [float(x) for x in r])
    fn = combine_rewards([("test_one", 0.5), ("test_ref", 2.0)])
    total, per = fn(["a", "b", "c"], [0, 1, 3])
    np.testing.assert_allclose(total, [0.5, 2.5, 6.5])
    assert total.dtype == np.float32 and set(per) == {"test_one", "test_ref"}
    np.testing.assert_allclose(per["test_ref"], [0, 1, 3])
    with pytest.raises(ValueError, match="2 completions but 1 references"):
        fn(["a", "b"], [0])
    with pytest.raises(ValueError, match="unknown reward"):
        combine_rewards([("format", 0.5), ("acuracy", 1.0)])
    with pytest.raises(ValueError, match="duplicate"):
        combine_rewards([("format", 0.5), ("format", 1.0)])


# ---------------------------------------------------------------- format
GOOD_BOXED = "<think>The lesion is hyperdense.</think> The answer is \\boxed{B}."
GOOD_TAG = "<think>\nreasoning\n</think>\n<answer>yes</answer>\n"


@pytest.mark.parametrize(
    "text",
    [
        GOOD_BOXED,
        GOOD_TAG,
        "  <think>a</think>\\boxed{\\frac{1}{2}}  ",  # nested braces, surrounding whitespace
        "<think>a</think><answer>\\boxed{C}</answer>",  # a box inside the answer tag
    ],
)
def test_format_accepts_strict_reasoning_then_answer(text):
    assert format_reward(text) == 1.0


@pytest.mark.parametrize(
    "text",
    [
        "The answer is \\boxed{B}.",  # no reasoning block
        "Sure. <think>a</think> \\boxed{B}",  # text before <think>
        "<think>a</think>",  # no answer
        "<think>   </think> \\boxed{B}",  # blank reasoning
        "<think>a</think><think>b</think> \\boxed{B}",  # two reasoning blocks
        "<think>a \\boxed{B}",  # unclosed think
        "<think>a</think> \\boxed{}",  # empty box
        "<think>a</think> \\boxed{B",  # unbalanced box
        "<think>a</think> \\boxed{A} or \\boxed{B}",  # two boxes
        "<think>a</think> <answer> </answer>",  # empty answer tag
        "<think>a</think> <answer>B</answer> trailing",  # text after the answer tag
        "<think>a</think> <answer>A</answer><answer>B</answer>",  # two answer tags
        "<think>a</think> <answer>B",  # unclosed answer tag
        "<think>a <answer>A</answer></think> <answer>B</answer>",  # answer tag inside the reasoning
        "<think>a</think> \\boxed{B} <answer>B</answer> more",  # mixed forms that fit neither
    ],
)
def test_format_rejects(text):
    assert format_reward(text) == 0.0


@pytest.mark.parametrize("style, eval_style", [("any", "either"), ("boxed", "boxed"), ("answer_tag", "tag")])
def test_format_reward_is_the_eval_suite_format_check(style, eval_style):
    texts = [GOOD_BOXED, GOOD_TAG, "<think>a</think> \\boxed{A} or \\boxed{B}", "<think>a</think>"]
    assert [format_reward(t, style) for t in texts] == [
        float(has_think_answer_format(t, eval_style)) for t in texts
    ]


def test_format_answer_styles_are_exclusive():
    assert format_reward(GOOD_BOXED, "boxed") == 1.0
    assert format_reward(GOOD_BOXED, "answer_tag") == 0.0
    assert format_reward(GOOD_TAG, "answer_tag") == 1.0
    assert format_reward(GOOD_TAG, "boxed") == 0.0
    assert get_reward("format_boxed")([GOOD_BOXED, GOOD_TAG], [None, None]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="answer_style"):
        format_reward(GOOD_TAG, "json")


# ---------------------------------------------------------------- accuracy (the evaluation suite's scorer)
MC = {"question_type": "mc", "answer": "B", "options": ("CT", "MRI", "X-ray", "Ultrasound")}


@pytest.mark.parametrize(
    "completion, reference, expected",
    [
        ("<think>T2 signal.</think> The answer is \\boxed{B}.", MC, 1.0),
        ("<think>T2 signal.</think> \\boxed{C}", MC, 0.0),
        ("<think>Not A.</think><answer>MRI</answer>", MC, 1.0),  # option text selects B
        ("<think>no mass? no</think> \\boxed{Yes}", {"question_type": "yesno", "answer": "yes"}, 1.0),
        ("<think>a</think> \\boxed{no}", {"question_type": "yesno", "answer": "yes"}, 0.0),
        ("<think>a</think> \\boxed{yes or no}", {"question_type": "yesno", "answer": "yes"}, 0.0),
        ("<think>a</think> \\boxed{Left lung.}", "left lung", 1.0),  # bare string: closed question
        ("<think>a</think> \\boxed{right lung}", "left lung", 0.0),
        ("Answer: Left Lung", {"answer": "left lung"}, 1.0),  # no format needed for accuracy
    ],
)
def test_accuracy_uses_the_shared_eval_scorer(completion, reference, expected):
    assert rewards.accuracy_reward(completion, reference) == expected


def test_accuracy_accepts_eval_items_and_rejects_unscorable_references():
    from lingshu_jax.evals.types import EvalItem

    item = EvalItem(
        id="1",
        benchmark="T",
        category="",
        question_type="mc",
        images=(),
        question="q",
        answer="B",
        options=MC["options"],
    )
    assert get_reward("accuracy")(["<think>a</think>\\boxed{B}", "\\boxed{A}"], [item, item]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="question_type 'report'"):
        rewards.accuracy_reward("x", {"question_type": "report", "answer": "findings"})
    with pytest.raises(ValueError, match="without an answer"):
        rewards.accuracy_reward("x", {"question_type": "closed"})


def test_lingshu_reward_is_half_format_plus_accuracy():
    fn = combine_rewards(rewards.LINGSHU_REWARDS)
    completions = [
        "<think>a</think> \\boxed{B}",  # format and right
        "<think>a</think> \\boxed{A}",  # format, wrong
        "The answer is B.",  # right, no format
        "<think>a</think>",  # neither: no answer at all
    ]
    total, per = fn(completions, [MC] * 4)
    np.testing.assert_array_equal(per["format"], [1, 1, 0, 0])
    np.testing.assert_array_equal(per["accuracy"], [1, 0, 1, 0])
    np.testing.assert_allclose(total, [1.5, 0.5, 1.0, 0.0])
