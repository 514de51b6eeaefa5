"""Prompts match MedEvalKit's strings exactly (utils/question_formats.py, MMMU data_utils, model wrappers)."""

from lingshu_jax.evals import prompts


def test_multiple_choice_prompt_is_medevalkits_exact_text():
    got = prompts.multiple_choice_prompt("Q?", prompts.format_choices(["x", "y"]))
    assert (
        got
        == "\nQuestion: Q?\nOptions: \nA. x\nB. y\nAnswer with the option's letter from the given choices directly."
    )
    boxed = prompts.multiple_choice_prompt("Q?", ["A. x"], reasoning=True)
    assert boxed.endswith(
        'Answer with the option\'s letter from the given choices and put the letter in one "\\boxed{}".'
    )


def test_short_answer_prompts_are_medevalkits_exact_text():
    assert prompts.closed_prompt("Q?") == "Q?\nAnswer the question using a single word or phrase."
    assert prompts.open_prompt("Q?") == "Q?\nPlease answer the question concisely."
    assert prompts.judgement_prompt("Q?") == "Q?\nPlease output 'yes' or 'no'(no extra output)."
    assert (
        prompts.judgement_prompt("Q?", reasoning=True)
        == 'Q?\nPlease output "yes" or "no" and put the answer in one "\\boxed{}".'
    )
    assert prompts.open_prompt("问?", lang="zh") == "问?\n请简要回答该问题。"


def test_report_prompt_asks_for_findings_and_impression():
    assert prompts.report_prompt() == (
        "You are a helpful assistant. Please generate a report for the given images, including both findings and "
        "impressions. Return the report in the following format: Findings: {} Impression: {}."
    )


def test_mmmu_prompt_lists_bracketed_letters_like_medevalkit():
    got = prompts.mmmu_prompt("Q?", ["a", "b"], multiple_choice=True)
    assert (
        got
        == "\nQ?\n\n(A) a\n(B) b\n\n\n        Answer with the option's letter from the given choices directly."
    )
    assert prompts.mmmu_prompt("Q?", [], multiple_choice=False) == (
        "\nQ?\n\n        Answer the question using a single word or phrase."
    )


def test_messages_put_one_image_first_and_prefix_several():
    one = prompts.build_messages("P", ["a.png"])
    assert one[0]["content"] == [{"type": "image", "image": "a.png"}, {"type": "text", "text": "P"}]
    two = prompts.build_messages("P", ["a.png", "b.png"])
    texts = [c.get("text") for c in two[0]["content"]]
    assert texts == ["<image_1>: ", None, "<image_2>: ", None, "P"]
    forced = prompts.build_messages("P", ["a.png"], prefix_images=True)
    assert forced[0]["content"][0] == {"type": "text", "text": "<image_1>: "}
    assert prompts.build_messages("P", [])[0]["content"] == [{"type": "text", "text": "P"}]
