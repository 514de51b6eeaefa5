"""From scored rows to a benchmark's metrics, as each MedEvalKit `cal_metrics` sums and divides.

Rows are the per-item dicts of `runner.score_items`: `split` ("open"/"closed" for the VQA benchmarks),
`rule_correct` (the rule's verdict), `judge` (the LLM judge's verdict when judged; a failed call is None
and counts as wrong, as MedEvalKit's `extract(None)` -> "" != "0"), `metrics` (open-question metrics).

VQA-RAD / PathVQA / SLAKE (VQA_RAD.py:56-145, PATH_VQA.py:54-144, SLAKE.py:77-179): total, open and
closed right counts; with the judge, the counts below (fixes "pathvqa_judge", "slake_judge"); open
metrics are sums over open questions divided by their number; open accuracy divided twice unless
"open_acc_once". A count of 0 questions gives None where MedEvalKit divides by zero.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from lingshu_jax.evals.fixes import Scoring
from lingshu_jax.evals.scoring import OPEN_METRIC_KEYS


def judged_items(benchmark: str, splits: Sequence[str], scoring: Scoring) -> list[int]:
    """Indices MedEvalKit sends to the judge: open questions; SLAKE every question (SLAKE.py:120-124)."""
    if benchmark == "SLAKE" and not scoring.on("slake_judge"):
        return list(range(len(splits)))
    return [i for i, split in enumerate(splits) if split == "open"]


def _ratio(right: float, total: int) -> float | None:
    return right / total if total else None


def vqa_counts(benchmark: str, rows: Sequence[dict], judge_used: bool, scoring: Scoring) -> dict:
    """{"total", "open", "closed"} blocks of a closed/open VQA benchmark."""
    closed = [r for r in rows if r["split"] == "closed"]
    opened = [r for r in rows if r["split"] == "open"]
    close_rule = sum(bool(r["rule_correct"]) for r in closed)
    open_right = sum(bool(r["rule_correct"]) for r in opened)
    close_right, total_right = close_rule, close_rule + open_right
    if judge_used:
        open_right = sum(r.get("judge") is True for r in opened)
        if benchmark == "PATH_VQA" and not scoring.on("pathvqa_judge"):
            close_right, total_right = 0, open_right  # PATH_VQA.py:123-125
        elif benchmark == "SLAKE" and not scoring.on("slake_judge"):
            close_right = close_rule + sum(r.get("judge") is True for r in closed)  # SLAKE.py:153,163-168
            total_right = close_right + open_right
        else:
            total_right = close_rule + open_right  # VQA_RAD.py:125-135
    open_block = {"total": len(opened), "right": open_right, "acc": _ratio(open_right, len(opened))}
    if open_block["acc"] is not None and not scoring.on("open_acc_once"):
        open_block["acc"] /= len(opened)  # VQA_RAD.py:142-144 divides "acc" by the total again
    for key in OPEN_METRIC_KEYS:
        total = sum(r["metrics"].get(key, 0.0) for r in opened)
        open_block[key] = _ratio(total, len(opened))
    open_block["rule_right"] = sum(bool(r["rule_correct"]) for r in opened)
    return {
        "total": {"total": len(rows), "right": total_right, "acc": _ratio(total_right, len(rows))},
        "open": open_block,
        "closed": {"total": len(closed), "right": close_right, "acc": _ratio(close_right, len(closed))},
    }


def accuracy(rows: Sequence[dict]) -> dict:
    """{"total", "right", "acc"} of rows by their final `correct`."""
    right = sum(bool(r["correct"]) for r in rows)
    return {"total": len(rows), "right": right, "acc": _ratio(right, len(rows))}


def breakdown(rows: Sequence[dict], key: str) -> dict:
    """`accuracy` per value of `key` (rows without a value are left out)."""
    groups = defaultdict(list)
    for r in rows:
        if r.get(key) not in (None, ""):
            groups[str(r[key])].append(r)
    return {k: accuracy(v) for k, v in sorted(groups.items())}
