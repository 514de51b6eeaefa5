"""The generation function of the evaluation runner (`lingshu_jax.evals.runner.evaluate`).

    generate_fn = make_generate_fn("path/to/Lingshu-7B", max_new_tokens=1024, batch_size=16)
    evaluate(generate_fn, ["VQA_RAD"], data_dir, out_dir)

`generate_fn(items: list[EvalItem]) -> list[str]`, one response per item, in order. Greedy decoding (the
paper's setting) unless `sampling` says otherwise. Each item is encoded once (its `messages`, else its
`prompt` / `question` with its `images`), items are sorted by prompt length (tokens plus image tokens) and
generated `batch_size` at a time, so a batch pads little; responses go back in the items' order.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax

from lingshu_jax.evals.prompts import build_messages
from lingshu_jax.infer import batching
from lingshu_jax.infer.generator import Generator
from lingshu_jax.infer.sampling import GREEDY, SamplingConfig


def item_messages(item) -> list[dict]:
    """An EvalItem's conversation: `messages` when built, else one user turn from prompt/question + images."""
    if item.messages:
        return [dict(m) for m in item.messages]
    text = item.prompt or item.question
    if not text:
        raise ValueError(
            f"EvalItem {item.id!r} ({item.benchmark}): no messages, prompt or question to generate from"
        )
    return list(build_messages(text, item.images))


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (sorted by length, stable), at most batch_size each."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be >= 1")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _default_dtype() -> str:
    """bfloat16 on accelerators (Lingshu's weights are bf16), float32 on CPU."""
    return "float32" if jax.default_backend() == "cpu" else "bfloat16"


def make_generate_fn(
    model,
    max_new_tokens: int = 1024,
    batch_size: int = 8,
    *,
    sampling: SamplingConfig = GREEDY,
    seed: int = 0,
    dtype: str | None = None,
    mesh=None,
    rules=None,
):
    """-> generate_fn(items) -> list[str] for the evaluation runner.

    Args:
      model: a checkpoint directory, a `LingshuModel` or a `Generator`.
      max_new_tokens: per response; batch_size: items per compiled generation call.
      sampling: greedy by default; seed: PRNG seed when sampling.
      dtype: compute dtype when loading from a path (default: float32 on CPU, else bfloat16).
      mesh, rules: run sharded.
    """
    if isinstance(model, Generator):
        gen = model
    elif isinstance(model, str):
        gen = Generator.from_pretrained(model, dtype=dtype or _default_dtype(), mesh=mesh, rules=rules)
    else:
        gen = Generator.from_model(model, mesh=mesh, rules=rules)
    proc = gen.require_processor()

    def generate_fn(items) -> list[str]:
        encoded = [proc(item_messages(item), add_generation_prompt=True) for item in items]
        lengths = [int(batching.prompt_lengths(e).max()) for e in encoded]
        responses: list[str | None] = [None] * len(items)
        for idx in length_batches(lengths, batch_size):
            batch = batching.collate([encoded[i] for i in idx], gen.pad_token_id or 0)
            texts = gen.decode(gen.generate_ids(batch, max_new_tokens, sampling, seed))
            for i, text in zip(idx, texts):
                responses[i] = text
        return responses

    return generate_fn


# The factory name scripts/evaluate.py looks up: factory(model_path, max_new_tokens=...) -> generate_fn.
make_eval_generate_fn = make_generate_fn

__all__ = ["item_messages", "length_batches", "make_eval_generate_fn", "make_generate_fn"]
