"""MedEvalKit's prompts, word for word (`utils/question_formats.py`, `utils/MMMU/data_utils.py`).

Every builder takes `reasoning`: MedEvalKit's REASONING=True variants ask for the answer inside
``\\boxed{}``. Languages: "en" and "zh" (SLAKE has Chinese questions).

Chat messages follow MedEvalKit's Qwen2.5-VL wrapper: one image goes before the prompt; a list of
images (MedEvalKit's "images" key: MedXpertQA-MM, IU-Xray, MIMIC-CXR) is interleaved as
``<image_1>: `` image ``<image_2>: `` image ... then the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

_MC_EN = "Answer with the option's letter from the given choices directly."
_MC_EN_BOXED = (
    'Answer with the option\'s letter from the given choices and put the letter in one "\\boxed{}".'
)
_MC_ZH = "请直接使用给定选项中的选项字母来回答该问题。"
_MC_ZH_BOXED = '请直接使用给定选项中的选项字母来回答该问题,并将答案包裹在"\\boxed{}"里'

_SUFFIXES = {
    # kind -> lang -> (direct, reasoning)
    "yesno": {
        "en": (
            "Please output 'yes' or 'no'(no extra output).",
            'Please output "yes" or "no" and put the answer in one "\\boxed{}".',
        ),
        "zh": ("请输出'是'或'否'(不要有任何其它输出)。", "请输出'是'或'否'，并将答案放在一个'\\boxed{}'中。"),
    },
    "closed": {
        "en": (
            "Answer the question using a single word or phrase.",
            'Answer the question using a single word or phrase and put the answer in one "\\boxed{}".',
        ),
        "zh": (
            "请用一个单词或者短语回答该问题。",
            "请用一个单词或者短语回答该问题，并将答案放在一个'\\boxed{}'中。",
        ),
    },
    "open": {
        "en": (
            "Please answer the question concisely.",
            'Please answer the question concisely and put the answer in one "\\boxed{}".',
        ),
        "zh": ("请简要回答该问题。", "请简要回答该问题，并将答案放在一个'\\boxed{}'中。"),
    },
}

REPORT_PROMPT = (
    "You are a helpful assistant. Please generate a report for the given images, including both findings "
    "and impressions. Return the report in the following format: Findings: {} Impression: {}."
)

# MIMIC_CXR.py:85-87 writes the same sentence inside a triple-quoted string: newline and 8 spaces around it.
MIMIC_REPORT_PROMPT = "\n        " + REPORT_PROMPT + "\n        "


def _check_lang(lang: str) -> None:
    if lang not in ("en", "zh"):
        raise ValueError(f"prompt language {lang!r} not in ('en', 'zh')")


def format_choices(options: Sequence[str], sep: str = ". ") -> list[str]:
    """Lettered option lines: ``["A. first", "B. second", ...]``."""
    if len(options) > len(LETTERS):
        raise ValueError(f"{len(options)} options: at most {len(LETTERS)} are supported")
    return [f"{LETTERS[i]}{sep}{opt}" for i, opt in enumerate(options)]


def multiple_choice_prompt(
    question: str, choices: Sequence[str], reasoning: bool = False, lang: str = "en"
) -> str:
    """MedEvalKit `get_multiple_choice_prompt`; `choices` are already lettered lines ("A. ...")."""
    _check_lang(lang)
    options = "\n".join(str(c) for c in choices)
    if lang == "en":
        prompt = f"\nQuestion: {question}\nOptions: \n{options}"
        return prompt + "\n" + (_MC_EN_BOXED if reasoning else _MC_EN)
    prompt = f"\n问题： {question}\n选项： \n{options}"
    return prompt + "\n" + (_MC_ZH_BOXED if reasoning else _MC_ZH)


def _suffixed(kind: str, question: str, reasoning: bool, lang: str) -> str:
    _check_lang(lang)
    return question + "\n" + _SUFFIXES[kind][lang][1 if reasoning else 0]


def judgement_prompt(question: str, reasoning: bool = False, lang: str = "en") -> str:
    """Yes/no question (MedEvalKit `get_judgement_prompt`)."""
    return _suffixed("yesno", question, reasoning, lang)


def closed_prompt(question: str, reasoning: bool = False, lang: str = "en") -> str:
    """Closed question with a short answer (MedEvalKit `get_close_ended_prompt`)."""
    return _suffixed("closed", question, reasoning, lang)


def open_prompt(question: str, reasoning: bool = False, lang: str = "en") -> str:
    """Open question (MedEvalKit `get_open_ended_prompt`)."""
    return _suffixed("open", question, reasoning, lang)


def report_prompt() -> str:
    """Report generation (MedEvalKit `get_report_generation_prompt`; the same text for every dataset)."""
    return REPORT_PROMPT


def mmmu_prompt(question: str, options: Sequence[str], multiple_choice: bool, reasoning: bool = False) -> str:
    """MMMU's prompt as MedEvalKit builds it (`utils/MMMU/data_utils.construct_prompt`).

    Multiple choice lists options as ``(A) text``; the odd trailing spaces are MedEvalKit's.
    """
    if multiple_choice:
        example = "".join(f"({LETTERS[i]}) {opt}\n" for i, opt in enumerate(options))
        prompt = f"\n{question}\n\n{example}\n\n        "
        return prompt + (_MC_EN_BOXED if reasoning else _MC_EN)
    prompt = f"\n{question}\n\n        "
    return prompt + _SUFFIXES["closed"]["en"][1 if reasoning else 0]


def build_messages(prompt: str, images: Sequence[str], prefix_images: bool | None = None) -> tuple[dict, ...]:
    """One user turn in the Qwen2.5-VL content format, images as MedEvalKit's wrapper orders them.

    Args:
      prompt: the text prompt.
      images: image paths.
      prefix_images: put ``<image_i>: `` before each image; None: only when there are several.
    """
    if prefix_images is None:
        prefix_images = len(images) > 1
    content: list[dict] = []
    for i, path in enumerate(images):
        if prefix_images:
            content.append({"type": "text", "text": f"<image_{i + 1}>: "})
        content.append({"type": "image", "image": path})
    content.append({"type": "text", "text": prompt})
    return ({"role": "user", "content": content},)
