#!/usr/bin/env python
"""Answer a question about medical images with a Lingshu / Qwen2.5-VL checkpoint.

  python scripts/generate.py --model PATH --image X.png [--image Y.dcm] --prompt "What is shown?"
        [--max_new_tokens 256 --temperature 0 --top_p 1.0 --top_k 0 --seed 0 --dtype float32]
  python scripts/generate.py --model PATH --chat [--image X.png] < turns.txt

Single mode prints the answer. Chat mode reads user turns from stdin, one per line, and prints each reply
on its own line; `:image PATH` attaches an image to the next turn (`--image` attaches to the first);
an empty line or end of input quits. Greedy unless --temperature > 0. Errors exit with status 2.
"""

from __future__ import annotations

import argparse
import itertools
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="Hugging Face or converted checkpoint directory")
    p.add_argument("--image", action="append", default=[], help="image file (PNG/JPEG/DICOM); repeatable")
    p.add_argument("--prompt", help="the question (single mode)")
    p.add_argument("--chat", action="store_true", help="multi-turn chat; user turns from stdin")
    p.add_argument("--system", help="system prompt (default: the chat template's)")
    p.add_argument("--max_new_tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top_p", type=float, default=1.0)
    p.add_argument("--top_k", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    return p


def _chat(gen, args, sampling) -> None:
    from lingshu_jax.infer import ChatSession, run_repl

    session = ChatSession(
        gen, system=args.system, max_new_tokens=args.max_new_tokens, sampling=sampling, seed=args.seed
    )
    lines = (f":image {path}\n" for path in args.image)
    if sys.stdin.isatty():
        print("chat: type a question; ':image PATH' attaches an image; empty line quits", file=sys.stderr)
    run_repl(session, itertools.chain(lines, sys.stdin), emit=lambda reply: print(reply, flush=True))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.chat and not args.prompt:
        print("error: --prompt is required (or use --chat)", file=sys.stderr)
        return 2
    try:
        from lingshu_jax.infer import Generator, SamplingConfig
        from lingshu_jax.infer.generator import user_turn

        sampling = SamplingConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
        gen = Generator.from_pretrained(args.model, dtype=args.dtype)
        if args.chat:
            _chat(gen, args, sampling)
            return 0
        messages = [{"role": "system", "content": args.system}] if args.system else []
        messages.append(user_turn(args.prompt, args.image))
        print(
            gen.generate_text(
                messages, max_new_tokens=args.max_new_tokens, sampling=sampling, seed=args.seed
            )[0]
        )
        return 0
    except (ValueError, FileNotFoundError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
