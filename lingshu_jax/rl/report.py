"""A GRPO run's figures from its `metrics.jsonl` (one row per step, `train.log_every = 1`): the reward
curve's first and last fifth, and the step timings with the compile steps left out.

    python scripts/rl_summary.py WORKDIR            # markdown, for docs/rl_cpu.md
"""

from __future__ import annotations

import os

import numpy as np

from lingshu_jax.train.metrics import read_metrics

CURVES = ("reward/accuracy", "reward/format", "reward")
# medians over the steady steps (those after `skip`): throughput and wall-clock seconds per phase
TIMINGS = (
    "rollout_tokens_per_s",
    "time/rollout",
    "time/logprob",
    "time/update",
    "time/update_per_minibatch",
    "time/step",
)
COMPILE = ("time/compile/rollout", "time/compile/update")


def fifths(values: list[float]) -> tuple[float, float]:
    """(mean of the first fifth, mean of the last fifth); a fifth is len // 5 steps, at least one."""
    n = max(len(values) // 5, 1)
    return float(np.mean(values[:n])), float(np.mean(values[-n:]))


def summarize(rows: list[dict], skip: int = 1) -> dict:
    """Figures of a run's per-step rows.

    Args:
      rows: metrics rows with consecutive steps (log_every = 1).
      skip: leading steps left out of the timing medians (step 1 compiles every program).

    Returns:
      {"steps", "curves": {key: [per step]}, "fifths": {key: (first, last)}, "median": {key: value},
       "first_step": {key: value}, "compile_total": {key: seconds over the run}}; keys absent from the
      rows are left out.
    """
    if len(rows) <= skip:
        raise ValueError(f"summarize: {len(rows)} rows, need more than skip={skip}")
    steps = [int(r["step"]) for r in rows]
    if steps != list(range(steps[0], steps[0] + len(steps))):
        raise ValueError("summarize: the rows' steps are not consecutive (log_every must be 1)")

    def has(key):
        return all(key in r for r in rows)

    curves = {k: [float(r[k]) for r in rows] for k in CURVES if has(k)}
    steady = rows[skip:]
    return {
        "steps": len(rows),
        "curves": curves,
        "fifths": {k: fifths(v) for k, v in curves.items()},
        "median": {k: float(np.median([r[k] for r in steady])) for k in TIMINGS if has(k)},
        "first_step": {k: float(rows[0][k]) for k in (*TIMINGS, *COMPILE) if has(k)},
        "compile_total": {k: float(sum(r[k] for r in rows)) for k in COMPILE if has(k)},
    }


def _rounded(values) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


def markdown(summary: dict, skip: int = 1) -> str:
    """The summary as markdown tables (curves, fifths, timings)."""
    lines = ["| reward | first fifth | last fifth | per step |", "|---|---|---|---|"]
    for k, (first, last) in summary["fifths"].items():
        lines.append(f"| {k} | {first:.3f} | {last:.3f} | {_rounded(summary['curves'][k])} |")
    lines += [
        "",
        f"| timing | median, steps {skip + 1}-{summary['steps']} | step 1 |",
        "|---|---|---|",
    ]
    for k, v in summary["median"].items():
        lines.append(f"| {k} | {v:.3f} | {summary['first_step'].get(k, float('nan')):.3f} |")
    if summary["compile_total"]:
        lines += ["", "| compile seconds | step 1 | whole run |", "|---|---|---|"]
        for k, v in summary["compile_total"].items():
            lines.append(f"| {k} | {summary['first_step'][k]:.3f} | {v:.3f} |")
    return "\n".join(lines) + "\n"


def summarize_workdir(workdir: str, skip: int = 1) -> dict:
    return summarize(read_metrics(os.path.join(workdir, "metrics.jsonl")), skip)


def before_after_markdown(summary: dict, heldout: dict) -> str:
    """The before/after table of a finished run: sampled rewards (first vs last fifth of the steps) and,
    when given, held-out greedy scores {"before": {...}, "after": {...}} (`rl.heldout.greedy_scores`)."""
    lines = ["| metric | before | after | change |", "|---|---|---|---|"]
    for k, (first, last) in summary["fifths"].items():
        lines.append(f"| sampled {k} (first / last fifth) | {first:.3f} | {last:.3f} | {last - first:+.3f} |")
    if heldout:
        before, after = heldout["before"], heldout["after"]
        for k in before:
            if k != "n":
                lines.append(
                    f"| held-out greedy {k} ({before['n']} prompts) | {before[k]:.3f} | {after[k]:.3f} | "
                    f"{after[k] - before[k]:+.3f} |"
                )
    return "\n".join(lines) + "\n"
