"""The run summary behind docs/rl_cpu.md, on hand-made metrics rows."""

import pytest

from lingshu_jax.rl.report import before_after_markdown, fifths, markdown, summarize


def _rows(n):
    return [
        {
            "step": s,
            "reward/accuracy": s / 10,
            "reward/format": 1.0,
            "rollout_tokens_per_s": 5.0 if s == 1 else 100.0 + s,
            "time/update": 30.0 if s == 1 else 1.0,
            "time/compile/rollout": 12.0 if s == 1 else 0.0,
        }
        for s in range(1, n + 1)
    ]


def test_fifths_are_the_first_and_last_len_over_5_values():
    assert fifths([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) == (1.5, 9.5)
    assert fifths([1.0, 3.0]) == (1.0, 3.0)  # at least one value each


def test_summary_leaves_the_compile_step_out_of_the_medians():
    s = summarize(_rows(10))
    assert s["fifths"]["reward/accuracy"] == pytest.approx((0.15, 0.95))
    assert s["median"] == {"rollout_tokens_per_s": 106.0, "time/update": 1.0}  # steps 2..10
    assert s["first_step"]["time/update"] == 30.0 and s["compile_total"] == {"time/compile/rollout": 12.0}
    assert "reward" not in s["curves"]  # keys the rows lack are left out
    text = markdown(s)
    assert "| reward/accuracy | 0.150 | 0.950 |" in text and "median, steps 2-10" in text


def test_summary_needs_one_row_per_step():
    rows = _rows(6)
    with pytest.raises(ValueError, match="not consecutive"):
        summarize(rows[::2])
    with pytest.raises(ValueError, match="need more than skip=1"):
        summarize(rows[:1])


def test_before_after_table_has_sampled_fifths_and_heldout_scores_with_their_change():
    heldout = {
        "before": {"accuracy": 0.5, "reward": 0.5, "n": 20},
        "after": {"accuracy": 0.6, "reward": 0.7, "n": 20},
    }
    text = before_after_markdown(summarize(_rows(10)), heldout)
    assert "| sampled reward/accuracy (first / last fifth) | 0.150 | 0.950 | +0.800 |" in text
    assert "| held-out greedy accuracy (20 prompts) | 0.500 | 0.600 | +0.100 |" in text
    assert "n (" not in text
