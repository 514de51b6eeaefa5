"""Run and score benchmarks: `evaluate` (generate, then score) and `score_predictions` (score only).

Output layout under `out_dir`:
  <benchmark>/predictions.jsonl   {"id", "benchmark", "response"} per item, appended batch by batch;
                                  a rerun skips the ids already there (resume).
  <benchmark>/scored.jsonl        per item: extracted prediction, correctness, judge verdict, metrics.
  <benchmark>/metrics.json        totals, closed/open split, per-category accuracy or report metrics.
  <benchmark>/submission.json     MMMU-Medical-test only: {id: parsed prediction} for MMMU's server.
  summary.json, results.md,       every benchmark's metrics; the tables in the paper's layout, and one
  results.csv                     row per benchmark (accuracy or report metrics) plus the macro averages.

`scoring` ("default" or "medevalkit", or a `fixes.Scoring`) selects MedEvalKit's behaviour bug for bug
or with its bugs fixed (lingshu_jax/evals/fixes.py, docs/eval.md). Items are scored one by one
(`BenchmarkSpec.scorer`), the LLM judge (VQA-RAD, SLAKE, PathVQA) decides what MedEvalKit sends it, and
`aggregate` sums as MedEvalKit's `cal_metrics` do.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence

from tqdm import tqdm

from lingshu_jax.evals import aggregate
from lingshu_jax.evals.benchmarks import get_spec, load_benchmark
from lingshu_jax.evals.benchmarks.mmmu import mmmu_prediction
from lingshu_jax.evals.datafiles import read_jsonl
from lingshu_jax.evals.fixes import Scoring, as_scoring
from lingshu_jax.evals.metrics import check_green_model, report_metrics
from lingshu_jax.evals.scoring import MedEvalKitCrash
from lingshu_jax.evals.tables import render_csv, render_markdown
from lingshu_jax.evals.types import BenchmarkSpec, EvalItem, LoadOptions

GenerateFn = Callable[[list[EvalItem]], list[str]]
RESPONSE_KEYS = ("response", "prediction", "output", "text")


def read_predictions(path: str) -> dict[str, str]:
    """{id: response} from a JSONL file (`id` plus one of response/prediction/output/text; last wins)."""
    out = {}
    for loc, rec in read_jsonl(path):
        if "id" not in rec:
            raise ValueError(f"{loc}: prediction record without 'id'")
        key = next((k for k in RESPONSE_KEYS if k in rec), None)
        if key is None:
            raise ValueError(f"{loc}: prediction record without one of {RESPONSE_KEYS}")
        out[str(rec["id"])] = "" if rec[key] is None else str(rec[key])
    return out


def _write_json(path: str, data) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
    os.replace(tmp, path)


def drop_torn_last_line(path: str) -> bool:
    """Removes a last line cut short by an interrupted write (no newline, not JSON); True if one was."""
    with open(path, "rb") as f:
        data = f.read()
    if not data or data.endswith(b"\n"):
        return False
    head, _, tail = data.rpartition(b"\n")
    try:
        json.loads(tail)
        return False
    except ValueError:
        pass
    with open(path, "wb") as f:
        f.write(head + b"\n" if head else b"")
    return True


def generate_predictions(
    generate_fn: GenerateFn, items: Sequence[EvalItem], path: str, batch_size: int = 32, progress: bool = True
) -> dict[str, str]:
    """Runs `generate_fn` on the items not yet in `path` (JSONL), appending after every batch.

    Resuming: the ids already in `path` are not generated again; a last line torn by an interrupted
    write is dropped (that item is generated again); any other malformed line is an error naming it.
    """
    if os.path.exists(path):
        drop_torn_last_line(path)
    done = read_predictions(path) if os.path.exists(path) else {}
    todo = [item for item in items if item.id not in done]
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    bench = items[0].benchmark if items else ""
    with (
        open(path, "a", encoding="utf-8") as f,
        tqdm(total=len(todo), desc=bench, disable=not progress) as bar,
    ):
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            outputs = list(generate_fn(batch))
            if len(outputs) != len(batch):
                raise ValueError(f"generate_fn returned {len(outputs)} outputs for a batch of {len(batch)}")
            for item, text in zip(batch, outputs):
                if not isinstance(text, str):
                    raise ValueError(
                        f"generate_fn returned {type(text).__name__} for item {item.id!r}, not str"
                    )
                f.write(
                    json.dumps(
                        {"id": item.id, "benchmark": item.benchmark, "response": text}, ensure_ascii=False
                    )
                    + "\n"
                )
                done[item.id] = text
            f.flush()
            bar.update(len(batch))
    return done


def _score_rows(
    spec: BenchmarkSpec, items: Sequence[EvalItem], responses: Mapping[str, str], judge, scoring: Scoring
) -> tuple[list[dict], dict]:
    rows, judge_inputs = [], []
    for item in items:
        try:
            score = spec.scorer(item, responses[item.id], scoring)
        except MedEvalKitCrash as exc:
            raise ValueError(
                f"{spec.name} item {item.id!r}: {exc}; MedEvalKit stops here, so --scoring=medevalkit does "
                "too (the default scoring scores it 0)"
            ) from exc
        rows.append(
            {
                "id": item.id,
                "category": item.category,
                "question_type": item.question_type,
                "split": score.split,
                "answer": item.answer,
                "response": responses[item.id],
                "pred": score.pred,
                "correct": score.correct,
                "rule_correct": score.correct,
                "metrics": score.metrics,
                **{k: item.meta.get(k, "") for k in spec.category_keys},
            }
        )
        if item.meta.get("unmatched_reference"):
            rows[-1]["unmatched_reference"] = True
        judge_inputs.append((item.question, score.judge_reference, score.judge_response))
    judge_info = {"used": False}
    if judge is not None and spec.judge_open:
        idx = aggregate.judged_items(spec.name, [r["split"] for r in rows], scoring)
        verdicts = judge.judge_many([judge_inputs[i] for i in idx])
        for i, verdict in zip(idx, verdicts):
            rows[i]["judge"] = verdict
            if rows[i]["split"] == "open":
                rows[i]["correct"] = verdict is True
        judge_info = {
            "used": True,
            "model": judge.model,
            "judged": len(idx),
            "failures": sum(v is None for v in verdicts),
        }
    return rows, judge_info


def _qa_metrics(spec: BenchmarkSpec, rows: Sequence[dict], judge_used: bool, scoring: Scoring) -> dict:
    if spec.judge_open:  # the closed/open VQA benchmarks
        out = aggregate.vqa_counts(spec.name, rows, judge_used, scoring)
    else:
        out = {"total": aggregate.accuracy(rows)}
    out["question_type"] = aggregate.breakdown(rows, "question_type")
    categories = {key: aggregate.breakdown(rows, key) for key in ("category", *spec.category_keys)}
    out["categories"] = {k: v for k, v in categories.items() if v}
    unmatched = [r["id"] for r in rows if r.get("unmatched_reference")]
    if unmatched:
        out["num_unmatched_references"] = len(unmatched)
        out["unmatched_reference_ids"] = unmatched[:20]
    return out


def score_items(
    spec: BenchmarkSpec,
    items: Sequence[EvalItem],
    responses: Mapping[str, str],
    judge=None,
    report_kwargs: Mapping | None = None,
    scoring: Scoring | str | None = None,
) -> tuple[list[dict], dict]:
    """(per-item rows, metrics) for items that all have a response."""
    scoring = as_scoring(scoring)
    metrics = {"benchmark": spec.name, "group": spec.group, "num_items": len(items), "scoring": scoring.mode}
    metrics["fixes"] = sorted(scoring.fixes)
    if not spec.has_answers:  # MMMU-Medical-test, the only split without public answers
        preds = {it.id: mmmu_prediction(it, responses[it.id], scoring) for it in items}
        return [{"id": k, "pred": v} for k, v in preds.items()], {**metrics, "submission": preds}
    rows, judge_info = _score_rows(spec, items, responses, judge, scoring)
    if spec.group == "report":
        metrics["report"] = report_metrics(
            [r["pred"] for r in rows],
            [it.answer for it in items],
            scoring=scoring,
            **dict(report_kwargs or {}),
        )
    else:
        metrics.update(_qa_metrics(spec, rows, judge_info["used"], scoring))
        metrics["judge"] = judge_info
    return rows, metrics


def _save(out_dir: str, spec: BenchmarkSpec, rows: list[dict], metrics: dict) -> None:
    bench_dir = os.path.join(out_dir, spec.name)
    os.makedirs(bench_dir, exist_ok=True)
    with open(os.path.join(bench_dir, "scored.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if "submission" in metrics:  # MMMU test: the file MMMU's evaluation server takes
        path = os.path.join(bench_dir, "submission.json")
        _write_json(path, metrics.pop("submission"))
        metrics["submission_file"] = path
    _write_json(os.path.join(bench_dir, "metrics.json"), metrics)


def score_predictions(
    benchmark: str,
    data_dir: str,
    predictions_jsonl: str,
    out_dir: str | None = None,
    *,
    judge=None,
    allow_missing: bool = False,
    report_kwargs: Mapping | None = None,
    scoring: Scoring | str | None = None,
) -> dict:
    """Scores predictions made elsewhere (e.g. vLLM): JSONL lines {"id", "response"} keyed by our item ids.

    Items without a prediction raise a ValueError unless `allow_missing` (then they are left out and
    counted in `num_missing`). Writes scored.jsonl and metrics.json under `out_dir/<benchmark>/` if given.
    """
    spec = get_spec(benchmark)
    items = load_benchmark(benchmark, data_dir, LoadOptions(need_images=False))
    responses = read_predictions(predictions_jsonl)
    missing = [it.id for it in items if it.id not in responses]
    if missing and not allow_missing:
        raise ValueError(
            f"{predictions_jsonl}: no prediction for {len(missing)} of {len(items)} {benchmark} items "
            f"(first: {missing[:5]}); pass allow_missing to score the rest"
        )
    known = {it.id for it in items}
    items = [it for it in items if it.id in responses]
    if not items:
        raise ValueError(f"{predictions_jsonl}: none of the ids match {benchmark} items")
    rows, metrics = score_items(spec, items, responses, judge, report_kwargs, scoring)
    metrics["num_missing"] = len(missing)
    metrics["num_unmatched_predictions"] = sum(k not in known for k in responses)
    if out_dir:
        _save(out_dir, spec, rows, metrics)
        update_summary(out_dir, {spec.name: metrics})
    else:
        metrics.pop("submission", None)
    return metrics


def evaluate(
    generate_fn: GenerateFn,
    benchmarks: Sequence[str],
    data_dir: str,
    out_dir: str,
    *,
    batch_size: int = 32,
    reasoning: bool = False,
    limit: int | None = None,
    judge=None,
    report_kwargs: Mapping | None = None,
    model_name: str = "model",
    progress: bool = True,
    scoring: Scoring | str | None = None,
) -> dict:
    """Generates (resumably) and scores each benchmark; returns {benchmark: metrics}.

    Args:
      generate_fn: `generate_fn(list[EvalItem]) -> list[str]`, one response per item, in order.
      benchmarks: registry names.
      data_dir: root with one folder per benchmark (or a single benchmark's folder).
      out_dir: results folder (see the module docstring); embedded images go to `out_dir/_images`.
      batch_size: items per `generate_fn` call; predictions are saved after every call.
      reasoning: MedEvalKit's reasoning prompts (answer in \\boxed{}).
      limit: first `limit` items of each benchmark (smoke runs).
      judge: an `LLMJudge` for the open questions of VQA-RAD, SLAKE and PathVQA.
      report_kwargs: extra arguments of `metrics.report_metrics` (RaTE model paths, scorers).
      model_name: row label in results.md.
      progress: a progress bar over the items of each benchmark.
      scoring: "default" (MedEvalKit with its bugs fixed) or "medevalkit" (bug for bug).
    """
    specs = [get_spec(name) for name in benchmarks]  # unknown names fail before any generation
    if (report_kwargs or {}).get("green_model"):  # a missing checkpoint fails before any generation
        check_green_model(report_kwargs["green_model"])
    options = LoadOptions(cache_dir=os.path.join(out_dir, "_images"), need_images=True)
    summary = {}
    for spec in specs:
        items = load_benchmark(spec.name, data_dir, options, reasoning=reasoning, limit=limit)
        pred_path = os.path.join(out_dir, spec.name, "predictions.jsonl")
        responses = generate_predictions(generate_fn, items, pred_path, batch_size, progress)
        rows, metrics = score_items(spec, items, responses, judge, report_kwargs, scoring)
        metrics["reasoning"] = reasoning
        _save(out_dir, spec, rows, metrics)
        summary[spec.name] = metrics
    update_summary(out_dir, summary, model_name)
    return summary


def update_summary(out_dir: str, results: Mapping[str, dict], model_name: str = "model") -> dict:
    """Merges {benchmark: metrics} into out_dir/summary.json (earlier runs keep their rows); rewrites
    results.md and results.csv."""
    path = os.path.join(out_dir, "summary.json")
    summary = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            summary = json.load(f)
    summary.update(results)
    os.makedirs(out_dir, exist_ok=True)
    _write_json(path, summary)
    with open(os.path.join(out_dir, "results.md"), "w", encoding="utf-8") as f:
        f.write(render_markdown(summary, model_name))
    with open(os.path.join(out_dir, "results.csv"), "w", encoding="utf-8", newline="") as f:
        f.write(render_csv(summary, model_name))
    return summary
