#!/usr/bin/env python
"""Medical evaluation CLI (MedEvalKit-equivalent): score predictions, or generate and score.

  python scripts/evaluate.py score --benchmark VQA_RAD --data_dir D --predictions P.jsonl [--out R]
  python scripts/evaluate.py run --model PATH --benchmarks VQA_RAD,SLAKE --data_dir D --out R/
        [--generate_fn module:factory] [--batch_size 32] [--limit N] [--reasoning]

`run` builds its generator with a factory `factory(model_path, max_new_tokens=...) -> generate_fn`,
where `generate_fn(list[EvalItem]) -> list[str]`. By default the factory is
`lingshu_jax.infer.make_eval_generate_fn` (imported only when `run` needs it); `--generate_fn
module:factory` plugs in any other (e.g. a vLLM wrapper, or a fake in tests).

LLM judge (open questions of VQA-RAD, SLAKE, PathVQA): --judge_base_url URL --judge_model NAME
[--judge_api_key_env OPENAI_API_KEY]; nothing is sent anywhere without these flags.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from lingshu_jax.evals.benchmarks import BENCHMARKS
from lingshu_jax.evals.judge import LLMJudge
from lingshu_jax.evals.runner import evaluate, score_predictions


def _add_judge_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--judge_base_url", help="OpenAI-compatible base URL, e.g. https://api.openai.com/v1")
    p.add_argument("--judge_model", help="judge model name (the paper: gpt-4.1-2025-04-14)")
    p.add_argument(
        "--judge_api_key_env",
        default="OPENAI_API_KEY",
        help="environment variable holding the API key ('' for none)",
    )
    p.add_argument("--judge_cache", help="JSONL cache of verdicts (default: <out>/judge_cache.jsonl)")


def _add_report_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--skip_meteor", action="store_true", help="do not compute METEOR (it may start a JVM)")
    p.add_argument(
        "--rate_bert_model", help="local RaTE-NER checkpoint (RaTEScore; needs the RaTEScore package)"
    )
    p.add_argument("--rate_eval_model", help="local BioLORD checkpoint (RaTEScore)")


def _report_kwargs(args) -> dict:
    kwargs = {"compute_meteor": not args.skip_meteor}
    if args.rate_bert_model or args.rate_eval_model:
        if not (args.rate_bert_model and args.rate_eval_model):
            raise SystemExit("--rate_bert_model and --rate_eval_model go together")
        kwargs["rate_models"] = {"bert_model": args.rate_bert_model, "eval_model": args.rate_eval_model}
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
                f"lingshu_jax.infer.make_eval_generate_fn is not available ({exc}); "
                "pass --generate_fn module:factory"
            ) from exc
        return make_eval_generate_fn
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise SystemExit(f"--generate_fn must be module:function, got {spec!r}")
    return getattr(importlib.import_module(module), attr)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    score = sub.add_parser("score", help="score a predictions JSONL ({id, response} per line)")
    score.add_argument("--benchmark", required=True, choices=sorted(BENCHMARKS))
    score.add_argument("--data_dir", required=True)
    score.add_argument("--predictions", required=True)
    score.add_argument("--out", help="results folder (metrics.json, scored.jsonl, summary.json, results.md)")
    score.add_argument(
        "--allow_missing", action="store_true", help="score only the items that have a prediction"
    )
    _add_judge_flags(score)
    _add_report_flags(score)
    run = sub.add_parser("run", help="generate with a model, then score")
    run.add_argument("--model", required=True, help="model path handed to the generator factory")
    run.add_argument("--benchmarks", required=True, help="comma-separated names: " + ",".join(BENCHMARKS))
    run.add_argument("--data_dir", required=True)
    run.add_argument("--out", required=True)
    run.add_argument(
        "--generate_fn", help="module:factory, factory(model_path, max_new_tokens=...) -> generate_fn"
    )
    run.add_argument("--batch_size", type=int, default=32)
    run.add_argument("--max_new_tokens", type=int, default=8192)
    run.add_argument("--limit", type=int)
    run.add_argument(
        "--reasoning", action="store_true", help="MedEvalKit reasoning prompts (\\boxed{} answers)"
    )
    run.add_argument("--no_progress", action="store_true")
    _add_judge_flags(run)
    _add_report_flags(run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "score":
        metrics = score_predictions(
            args.benchmark,
            args.data_dir,
            args.predictions,
            args.out,
            judge=_judge(args, args.out),
            allow_missing=args.allow_missing,
            report_kwargs=_report_kwargs(args),
        )
        print(json.dumps(metrics, indent=2, ensure_ascii=False))
        return 0
    names = [n.strip() for n in args.benchmarks.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmarks {unknown}; known: {', '.join(BENCHMARKS)}")
    generate_fn = _factory(args.generate_fn)(args.model, max_new_tokens=args.max_new_tokens)
    summary = evaluate(
        generate_fn,
        names,
        args.data_dir,
        args.out,
        batch_size=args.batch_size,
        reasoning=args.reasoning,
        limit=args.limit,
        judge=_judge(args, args.out),
        report_kwargs=_report_kwargs(args),
        model_name=os.path.basename(os.path.normpath(args.model)),
        progress=not args.no_progress,
    )
    with open(os.path.join(args.out, "results.md"), encoding="utf-8") as f:
        print(f.read())
    return 0 if summary else 1


if __name__ == "__main__":
    sys.exit(main())
