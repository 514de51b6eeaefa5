"""Command line of scripts/evaluate.py: `score`, `run` and `fixes` (MedEvalKit-equivalent evaluation).

  score --benchmark NAME --data_dir D --predictions P.jsonl [--out R] [--scoring default|medevalkit]
  run   --model PATH --benchmarks a,b --data_dir D --out R [--generate_fn module:factory] [--limit N]
        [--batch_size 32] [--reasoning] [--scoring ...]
  fixes --benchmark NAME --data_dir D --predictions P.jsonl   (what each default-mode fix changes)

Benchmark names are matched case-insensitively (vqa_rad = VQA_RAD). `run` shows a progress bar over the
items, appends predictions to R/<benchmark>/predictions.jsonl after every batch and, rerun with the same
--out, generates only the items not in that file. Both `score` and `run` print the paper's tables (per
benchmark, and the macro average in the paper's column order) and write summary.json, results.csv and
results.md under R. `run` builds its generator with `factory(model_path, max_new_tokens=...)`; the
default factory is `lingshu_jax.infer.make_eval_generate_fn`. The LLM judge (VQA-RAD, SLAKE, PathVQA)
runs only with --judge_base_url and --judge_model.
"""

from __future__ import annotations

import argparse
import importlib
import os

from lingshu_jax.evals.benchmarks import BENCHMARKS, canonical_name
from lingshu_jax.evals.fix_effects import describe, fix_effects
from lingshu_jax.evals.fixes import SCORING_MODES
from lingshu_jax.evals.judge import LLMJudge
from lingshu_jax.evals.runner import evaluate, score_predictions


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data_dir", required=True, help="root with one folder per benchmark")
    p.add_argument("--scoring", default="default", type=str.lower, choices=SCORING_MODES)
    p.add_argument("--judge_base_url", help="OpenAI-compatible base URL, e.g. https://api.openai.com/v1")
    p.add_argument("--judge_model", help="judge model name (the paper: gpt-4.1-2025-04-14)")
    p.add_argument("--judge_api_key_env", default="OPENAI_API_KEY", help="env variable of the key ('' none)")
    p.add_argument("--judge_cache", help="JSONL cache of verdicts (default: <out>/judge_cache.jsonl)")
    p.add_argument("--skip_meteor", action="store_true", help="do not compute METEOR (it may start a JVM)")
    p.add_argument("--rate_bert_model", help="local RaTE-NER checkpoint (needs the RaTEScore package)")
    p.add_argument("--rate_eval_model", help="local BioLORD checkpoint (RaTEScore)")
    p.add_argument("--green_model", help="local GREEN-radllama2-7b checkpoint (needs green_score)")


def parser() -> argparse.ArgumentParser:
    """The argument parser of scripts/evaluate.py."""
    top = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True)
    for name, helptext in (("score", "score a predictions JSONL"), ("fixes", "what each fix changes")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--benchmark", required=True, help="one of (any case): " + ", ".join(BENCHMARKS))
        p.add_argument("--predictions", required=True, help='JSONL lines {"id": ..., "response": ...}')
        p.add_argument("--out", help="results folder (default: next to the predictions, <stem>_scored/)")
        p.add_argument("--allow_missing", action="store_true", help="score only items with a prediction")
        _add_common(p)
    run = sub.add_parser("run", help="generate with a model (resumable), then score")
    run.add_argument("--model", required=True, help="model path handed to the generator factory")
    run.add_argument("--benchmarks", required=True, help="comma-separated, any case: " + ",".join(BENCHMARKS))
    run.add_argument("--out", required=True)
    run.add_argument("--generate_fn", help="module:factory, factory(model_path, max_new_tokens=...)")
    run.add_argument("--batch_size", type=int, default=32)
    run.add_argument("--max_new_tokens", type=int, default=8192)
    run.add_argument("--limit", type=int)
    run.add_argument("--reasoning", action="store_true", help="MedEvalKit reasoning prompts (\\boxed{})")
    run.add_argument("--no_progress", action="store_true")
    _add_common(run)
    return top


def _report_kwargs(args) -> dict:
    kwargs = {"compute_meteor": not args.skip_meteor}
    if args.rate_bert_model or args.rate_eval_model:
        if not (args.rate_bert_model and args.rate_eval_model):
            raise SystemExit("--rate_bert_model and --rate_eval_model go together")
        kwargs["rate_models"] = {"bert_model": args.rate_bert_model, "eval_model": args.rate_eval_model}
    if args.green_model:
        kwargs["green_model"] = args.green_model
    return kwargs


def _judge(args, out_dir: str | None) -> LLMJudge | None:
    if not args.judge_base_url and not args.judge_model:
        return None
    if not (args.judge_base_url and args.judge_model):
        raise SystemExit("--judge_base_url and --judge_model go together")
    cache = args.judge_cache or (os.path.join(out_dir, "judge_cache.jsonl") if out_dir else None)
    if cache:
        os.makedirs(os.path.dirname(os.path.abspath(cache)), exist_ok=True)
    return LLMJudge(args.judge_base_url, args.judge_model, args.judge_api_key_env or None, cache_path=cache)


def _factory(spec: str | None):
    if spec is None:
        try:
            from lingshu_jax.infer import make_eval_generate_fn  # pylint: disable=import-outside-toplevel
        except ImportError as exc:
            raise SystemExit(
                f"lingshu_jax.infer.make_eval_generate_fn unavailable ({exc}); pass --generate_fn"
            ) from exc
        return make_eval_generate_fn
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise SystemExit(f"--generate_fn must be module:function, got {spec!r}")
    return getattr(importlib.import_module(module), attr)


def _names(text: str) -> list[str]:
    try:
        return [canonical_name(n) for n in text.split(",") if n.strip()]
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc


def main(argv: list[str] | None = None) -> int:
    """Runs one command; prints the results tables (or the fix effects); returns the exit status."""
    args = parser().parse_args(argv)
    if args.command in ("score", "fixes"):
        (name,) = _names(args.benchmark)
        out = args.out or os.path.splitext(args.predictions)[0] + "_scored"
        if args.command == "fixes":
            effects = fix_effects(
                name, args.data_dir, args.predictions, _judge(args, out), _report_kwargs(args)
            )
            print("\n".join(f"{e['fix']}: {describe(e)}" for e in effects) or "no fix changes these scores")
            return 0
        score_predictions(
            name,
            args.data_dir,
            args.predictions,
            out,
            judge=_judge(args, out),
            allow_missing=args.allow_missing,
            report_kwargs=_report_kwargs(args),
            scoring=args.scoring,
        )
    else:
        names, out = _names(args.benchmarks), args.out
        generate_fn = _factory(args.generate_fn)(args.model, max_new_tokens=args.max_new_tokens)
        evaluate(
            generate_fn,
            names,
            args.data_dir,
            out,
            batch_size=args.batch_size,
            reasoning=args.reasoning,
            limit=args.limit,
            judge=_judge(args, out),
            report_kwargs=_report_kwargs(args),
            model_name=os.path.basename(os.path.normpath(args.model)),
            progress=not args.no_progress,
            scoring=args.scoring,
        )
    with open(os.path.join(out, "results.md"), encoding="utf-8") as f:
        print(f.read())
    print(f"written: {out}/summary.json, results.csv, results.md")
    return 0
