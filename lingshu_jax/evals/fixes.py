"""Scoring modes: MedEvalKit bug for bug ("medevalkit"), or MedEvalKit with its bugs fixed ("default").

The default mode is MedEvalKit (commit 9b12e3b) plus the fixes in `FIXES`, nothing else: every rule,
prompt and average is MedEvalKit's in both modes, and each place where the two modes can give a different
score is one `Fix` (one row of the table in docs/eval.md). A `Scoring` names the fixes that are on, so a
test or a user can switch any single fix: `Scoring.of("medevalkit", with_fixes=("yesno_words",))`.

File:line references are to https://github.com/alibaba-damo-academy/MedEvalKit at commit 9b12e3b.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

SCORING_MODES = ("default", "medevalkit")


@dataclasses.dataclass(frozen=True)
class Fix:
    """One bug of MedEvalKit that the default mode fixes.

    Attributes:
      name: switch name (`Scoring.on(name)`).
      where: MedEvalKit file:line (commit 9b12e3b).
      medevalkit: what MedEvalKit does there.
      ours: what the default mode does instead.
      why: why it is a bug.
    """

    name: str
    where: str
    medevalkit: str
    ours: str
    why: str


FIXES = (
    Fix(
        "think",
        "utils/utils.py:135-156, utils/VQA_RAD/VQA_RAD.py:87-96 (no <think> handling anywhere)",
        "scores the whole response, reasoning included",
        "removes the <think>...</think> block first (text after the last </think>)",
        'an answer word inside the reasoning ("is it yes or no?") decides the score',
    ),
    Fix(
        "boxed_word",
        "utils/utils.py:137-138",
        'any response containing the word "boxed" is replaced by extract_boxed_content(), which returns the '
        'string "None" when there is no closed \\boxed{...}',
        "takes the \\boxed{...} content only when a closed one exists, else goes on with the response",
        '"the lesion is boxed in red" becomes the answer "None"',
    ),
    Fix(
        "marker_space",
        "utils/utils.py:152-154 and 108-109",
        'keeps the text after an answer marker, and (multiple choice) after the last ":", as it is, with '
        "the space after the colon",
        "strips that text",
        '"Answer: lung" fails the exact match with "lung", "The answer is: B" is not read as B, only '
        "because of the space",
    ),
    Fix(
        "yesno_words",
        "utils/utils.py:172-173",
        "tests 'yes' in response ^ 'no' in response, then answer in response, as substrings",
        "exactly one of the words yes / no must occur, and it must be the reference",
        '"normal", "not", "know", "nodule" count as "no"; "eyes" as "yes"',
    ),
    Fix(
        "mc_empty",
        "utils/utils.py:77-93, 128-131",
        "the most-similar-option fallback starts at index 0 with similarity 0, so an answer similar to no "
        "option (an empty one included) picks option A",
        "an answer with similarity 0 to every option picks nothing (wrong)",
        "empty or truncated responses are credited whenever A is the reference",
    ),
    Fix(
        "f1_names",
        "utils/utils.py:192 with 210-226",
        "calculate_f1 returns (f1, precision, recall); the caller unpacks (precision, recall, f1)",
        "each value under its own name",
        "the reported precision is F1, recall is precision, F1 is recall",
    ),
    Fix(
        "empty_open",
        "utils/utils.py:187 and 216-217",
        "an empty open answer raises: Rouge.get_scores on an empty hypothesis, and calculate_f1 returns a "
        "bare 0 that cannot be unpacked",
        "scores 0 on every open metric",
        "one empty response aborts the whole benchmark",
    ),
    Fix(
        "open_acc_once",
        "utils/VQA_RAD/VQA_RAD.py:139,142-144; utils/SLAKE/SLAKE.py:172,175-177; "
        "utils/PATH_VQA/PATH_VQA.py:138,141-143 (MedEvalKit issue #37)",
        "open accuracy = right / total, then divided by total again in the loop over open metrics",
        "right / total",
        "the open accuracy reported is right / total^2",
    ),
    Fix(
        "pathvqa_judge",
        "utils/PATH_VQA/PATH_VQA.py:122-125 (MedEvalKit issue #30)",
        "with the LLM judge on, the closed (yes/no) right counts are set to 0 and never restored",
        "closed questions keep their rule-based count; the judge decides the open ones",
        "closed accuracy becomes 0 and the total counts only judged open answers",
    ),
    Fix(
        "slake_judge",
        "utils/SLAKE/SLAKE.py:120-124, 152-168 (MedEvalKit issue #30)",
        "with the judge on, every question is judged, and a judged-correct closed question is added on top "
        "of its rule-based count",
        "the judge decides the open questions only (as VQA-RAD), closed keep the rule",
        "closed questions are counted twice; accuracies can exceed 100%",
    ),
    Fix(
        "slake_yesno_case",
        "utils/SLAKE/SLAKE.py:138",
        'routes a closed question to the yes/no rule only if its answer is exactly "yes"/"no"; SLAKE\'s '
        'English answers are "Yes"/"No", so they take the exact-match rule',
        "compares the lower-cased reference, as VQA-RAD does (VQA_RAD.py:95,99)",
        'the yes/no rule is unreachable for SLAKE; "Yes, there is." fails the exact match',
    ),
    Fix(
        "mmmu_open_parse",
        "utils/MMMU/eval_val.py:51-53 with utils/MMMU/eval_utils.py:210-217",
        "stores the raw response string as parsed_pred of an open question; eval_open then iterates its "
        "characters, and no answer is ever found in a single character",
        "parses the response with parse_open_response first (as eval_test.py:45 does)",
        "MMMU open questions always score 0 on the validation split",
    ),
)
FIX_NAMES = tuple(f.name for f in FIXES)


@dataclasses.dataclass(frozen=True)
class Scoring:
    """Which fixes are on. `Scoring.of("default")`: all; `Scoring.of("medevalkit")`: none."""

    mode: str
    fixes: frozenset = frozenset()

    @classmethod
    def of(cls, mode: str = "default", with_fixes: Iterable[str] = (), without: Iterable[str] = ()):
        """The mode's fixes, plus `with_fixes`, minus `without` (names from `FIX_NAMES`)."""
        mode = str(mode).lower()
        if mode not in SCORING_MODES:
            raise ValueError(f"scoring mode {mode!r} not in {SCORING_MODES}")
        names = set(FIX_NAMES if mode == "default" else ())
        for name in (*with_fixes, *without):
            if name not in FIX_NAMES:
                raise ValueError(f"unknown fix {name!r}; known: {', '.join(FIX_NAMES)}")
        names = (names | set(with_fixes)) - set(without)
        return cls(mode=mode, fixes=frozenset(names))

    def on(self, name: str) -> bool:
        """Whether fix `name` is applied."""
        if name not in FIX_NAMES:
            raise ValueError(f"unknown fix {name!r}; known: {', '.join(FIX_NAMES)}")
        return name in self.fixes


def as_scoring(scoring: Scoring | str | None) -> Scoring:
    """A `Scoring` from a mode name (None: "default")."""
    if isinstance(scoring, Scoring):
        return scoring
    return Scoring.of(scoring or "default")
