"""MedEvalKit-equivalent medical evaluation: loaders, prompts, answer extraction, scoring, metrics, runner.

Public entry points:
  strip_think, has_think_answer_format                   (lingshu_jax.evals.extract; shared with RL rewards)
  BENCHMARKS, load_benchmark                              (lingshu_jax.evals.benchmarks)
  evaluate, score_predictions                             (lingshu_jax.evals.runner)
  LLMJudge                                                (lingshu_jax.evals.judge)
  Scoring, SCORING_MODES, FIXES                           (lingshu_jax.evals.fixes; docs/eval.md)
  EvalItem                                                (lingshu_jax.evals.types)
"""

from lingshu_jax.evals.benchmarks import BENCHMARKS, load_benchmark
from lingshu_jax.evals.extract import has_think_answer_format, strip_think
from lingshu_jax.evals.fixes import FIXES, SCORING_MODES, Scoring
from lingshu_jax.evals.judge import LLMJudge
from lingshu_jax.evals.runner import evaluate, score_predictions
from lingshu_jax.evals.types import EvalItem, ItemScore, LoadOptions

__all__ = [
    "BENCHMARKS",
    "FIXES",
    "SCORING_MODES",
    "EvalItem",
    "ItemScore",
    "LLMJudge",
    "LoadOptions",
    "Scoring",
    "evaluate",
    "has_think_answer_format",
    "load_benchmark",
    "score_predictions",
    "strip_think",
]
