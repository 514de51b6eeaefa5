"""docs/eval.md's fix table is the code's: one row per fix, its MedEvalKit location, and the fixture effects."""

import os

import pytest

from lingshu_jax.evals.fix_effects import fixture_effects, render_fix_table

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "evals", "fixtures")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class AlwaysCorrect:
    """Judge stand-in: every answer is correct."""

    model = "always-correct"

    def judge_many(self, triples):
        return [True] * len(triples)


def fix_table() -> str:
    return render_fix_table(fixture_effects(FIXTURES, os.path.join(FIXTURES, "responses"), AlwaysCorrect()))


def print_fix_table() -> None:
    print(fix_table(), end="")


def test_docs_fix_table_equals_the_measured_fixture_effects():
    with open(os.path.join(ROOT, "docs", "eval.md"), encoding="utf-8") as f:
        docs = f.read()
    table = fix_table()
    assert table in docs
    # every fix changes a fixture score: no row without its measured difference
    assert "no change on the fixture" not in table
