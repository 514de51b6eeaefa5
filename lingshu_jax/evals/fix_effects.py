"""What each fix of the default mode changes on a set of predictions (the last column of docs/eval.md).

For every fix: the benchmark scored in the default mode, and in the default mode without that fix; the
metrics that differ are reported. (Removing one fix from the default, rather than adding one to the
medevalkit mode, keeps the other rows readable when the medevalkit mode itself stops on an item.)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from lingshu_jax.evals.benchmarks import get_spec, load_benchmark
from lingshu_jax.evals.fixes import FIX_NAMES, FIXES, Scoring
from lingshu_jax.evals.runner import read_predictions, score_items
from lingshu_jax.evals.types import LoadOptions

HEADLINE = (
    ("total", "acc"),
    ("closed", "acc"),
    ("open", "acc"),
    ("open", "em"),
    ("open", "precision"),
    ("open", "recall"),
    ("open", "f1"),
    ("report", "bleu1"),
    ("report", "bleu4"),
    ("report", "rougel"),
)


def _headline(metrics: Mapping) -> dict[str, float | None]:
    return {f"{block}.{key}": (metrics.get(block) or {}).get(key) for block, key in HEADLINE}


def _score(spec, items, responses, judge, scoring, report_kwargs) -> dict[str, float | None] | str:
    try:
        return _headline(score_items(spec, items, responses, judge, report_kwargs, scoring)[1])
    except ValueError as exc:
        return f"stops: {str(exc).split(';')[0]}"


def fix_effects(
    benchmark: str,
    data_dir: str,
    predictions: str | Mapping[str, str],
    judge=None,
    report_kwargs: Mapping | None = None,
    fixes: Sequence[str] = FIX_NAMES,
) -> list[dict]:
    """[{"fix", "benchmark", "changes": {metric: (without the fix, default)} or "without": reason}].

    Only fixes that change something are listed. `predictions`: a JSONL path or {id: response}.
    """
    spec = get_spec(benchmark)
    items = load_benchmark(spec.name, data_dir, LoadOptions(need_images=False))
    responses = read_predictions(predictions) if isinstance(predictions, str) else dict(predictions)
    items = [it for it in items if it.id in responses]
    kwargs = dict(report_kwargs or {"compute_meteor": False})
    default = _score(spec, items, responses, judge, Scoring.of("default"), kwargs)
    out = []
    for name in fixes:
        without = _score(spec, items, responses, judge, Scoring.of("default", without=(name,)), kwargs)
        if isinstance(without, str):
            out.append({"fix": name, "benchmark": spec.name, "without": without, "default": default})
            continue
        changes = {
            k: (without[k], default[k])
            for k in default
            if without[k] is not None and default[k] is not None and abs(without[k] - default[k]) > 1e-12
        }
        if changes:
            out.append({"fix": name, "benchmark": spec.name, "changes": changes})
    return out


def describe(effect: Mapping) -> str:
    """One cell of the docs table: "VQA_RAD total.acc 25.0 -> 50.0" (x100), or where MedEvalKit stops."""
    if "without" in effect:
        acc = effect["default"].get("total.acc")
        tail = f"; default total.acc {100 * acc:.1f}" if acc is not None else ""
        return f"{effect['benchmark']}: without the fix the run {effect['without']}{tail}"
    parts = [f"{k} {100 * a:.1f} -> {100 * b:.1f}" for k, (a, b) in effect["changes"].items()]
    return f"{effect['benchmark']} " + ", ".join(parts)


def fixture_effects(data_dir: str, responses_dir: str, judge=None) -> dict[str, list[str]]:
    """{fix: ["<benchmark> metric a -> b", ...]} over the benchmarks with a `<name>.jsonl` in
    `responses_dir`; with a judge, the closed/open VQA benchmarks are scored a second time with it
    ("judge on: ..." entries)."""
    by_fix: dict[str, list[str]] = {name: [] for name in FIX_NAMES}
    for fname in sorted(os.listdir(responses_dir)):
        name = fname[: -len(".jsonl")]
        path = os.path.join(responses_dir, fname)
        runs = [(None, "")] + ([(judge, "judge on: ")] if judge and get_spec(name).judge_open else [])
        for run_judge, prefix in runs:
            for effect in fix_effects(name, data_dir, path, run_judge):
                by_fix[effect["fix"]].append(prefix + describe(effect))
    return by_fix


def render_fix_table(by_fix: Mapping[str, Sequence[str]]) -> str:
    """The Markdown table of docs/eval.md: one row per fix, its effect on the fixture in the last column."""
    head = (
        "| # | switch | MedEvalKit (9b12e3b) | MedEvalKit does | default mode does | why | on the fixture |"
    )
    lines = [head, "|---|---|---|---|---|---|---|"]
    for i, fix in enumerate(FIXES, 1):
        effect = "; ".join(by_fix.get(fix.name, ())) or "no change on the fixture"
        cells = [str(i), f"`{fix.name}`", fix.where, fix.medevalkit, fix.ours, fix.why, effect]
        cells = [c.replace("|", "\\|").replace("<", "&lt;") for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
