"""Generation throughput: ours vs transformers' `generate`, same model, same prompt batch, greedy.

    decode_throughput(model_dir=None, batch_size=4, prompt_len=64, max_new_tokens=64)

For each side: one warm-up call (compilation excluded), then one timed call generating `max_new_tokens`
for every row (no stop token) and one timed call generating a single token (prefill). Reported:
  *_e2e_tok_s      batch * max_new_tokens / time of the full call (prefill included)
  *_decode_tok_s   batch * (max_new_tokens - 1) / (full call - prefill-only call)
Text-only prompts of random token ids; float32 on CPU. With no `model_dir`, a tiny random checkpoint
is written to a temporary directory.
"""

from __future__ import annotations

import tempfile
import time

import jax
import numpy as np

from lingshu_jax.infer.generate import generate_ids


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _ours(config, params, inputs, max_new_tokens) -> dict[str, float]:
    def run(n):
        out = generate_ids(config, params, inputs, n, stop_token_ids=(), pad_token_id=0)
        assert out["tokens"].shape[1] == n, out["tokens"].shape
        return out

    run(max_new_tokens), run(1)  # warm-up: compiles both programs
    return {"full_s": _timed(lambda: run(max_new_tokens)), "prefill_s": _timed(lambda: run(1))}


def _transformers(model_dir, inputs, max_new_tokens, threads) -> dict[str, float]:
    import torch
    import transformers

    if threads:
        torch.set_num_threads(threads)
    hf = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    tensors = {k: torch.from_numpy(np.asarray(v)) for k, v in inputs.items()}

    def run(n):
        with torch.no_grad():
            out = hf.generate(**tensors, do_sample=False, max_new_tokens=n, min_new_tokens=n, pad_token_id=0)
        assert out.shape[1] - tensors["input_ids"].shape[1] == n, out.shape

    run(max_new_tokens)  # warm-up
    return {"full_s": _timed(lambda: run(max_new_tokens)), "prefill_s": _timed(lambda: run(1))}


def _rates(t: dict[str, float], batch_size: int, max_new_tokens: int) -> dict[str, float]:
    decode = max(t["full_s"] - t["prefill_s"], 1e-9)
    return {
        "e2e_tok_s": batch_size * max_new_tokens / t["full_s"],
        "decode_tok_s": batch_size * (max_new_tokens - 1) / decode,
        **t,
    }


def decode_throughput(
    model_dir: str | None = None,
    batch_size: int = 4,
    prompt_len: int = 64,
    max_new_tokens: int = 64,
    seed: int = 0,
    transformers_side: bool = True,
    torch_threads: int | None = None,
) -> dict:
    """-> {"ours": {...}, "transformers": {...}, "setup": {...}} tokens/s and seconds (see module doc)."""
    if max_new_tokens < 2:
        raise ValueError(f"max_new_tokens={max_new_tokens}: need >= 2 to separate decode from prefill")
    from lingshu_jax.convert.load import load_model

    tmp = None
    if model_dir is None:
        from lingshu_jax.testing.hf_models import write_tiny_hf_dir

        tmp = tempfile.TemporaryDirectory()
        model_dir = write_tiny_hf_dir(tmp.name, "tiny", seed=seed)
    try:
        config, params, _ = load_model(model_dir)
        vocab = min(config.text.vocab_size, 1000)
        ids = np.random.default_rng(seed).integers(0, vocab, (batch_size, prompt_len)).astype(np.int64)
        inputs = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        result = {
            "ours": _rates(_ours(config, params, inputs, max_new_tokens), batch_size, max_new_tokens),
            "setup": {
                "model_dir": model_dir,
                "batch_size": batch_size,
                "prompt_len": prompt_len,
                "max_new_tokens": max_new_tokens,
                "backend": jax.default_backend(),
            },
        }
        if transformers_side:
            hf = _transformers(model_dir, inputs, max_new_tokens, torch_threads)
            result["transformers"] = _rates(hf, batch_size, max_new_tokens)
        return result
    finally:
        if tmp is not None:
            tmp.cleanup()


def main(argv=None) -> None:
    """python -m lingshu_jax.infer.bench [--model DIR] [--batch_size 4 --prompt_len 64 --max_new_tokens 64]"""
    import argparse
    import json

    p = argparse.ArgumentParser(description="ours vs transformers generation tokens/s (greedy, float32)")
    p.add_argument("--model", help="HF checkpoint directory (default: a tiny random one)")
    p.add_argument("--batch_size", type=int, default=4)
    p.add_argument("--prompt_len", type=int, default=64)
    p.add_argument("--max_new_tokens", type=int, default=64)
    p.add_argument("--no_transformers", action="store_true")
    args = p.parse_args(argv)
    jax.config.update("jax_default_matmul_precision", "highest")
    print(
        json.dumps(
            decode_throughput(
                args.model,
                args.batch_size,
                args.prompt_len,
                args.max_new_tokens,
                transformers_side=not args.no_transformers,
            ),
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
