"""Decode throughput: `lingshu_jax.infer.generate` vs transformers' `generate`, greedy, the same prompts,
the same `max_new_tokens`, no stop token on either side.

One `decode()` = a full call generating N tokens per row plus a call generating 1 token (prefill and the
first token). As in `lingshu_jax.infer.bench`:
    decode tokens/s = batch * (N - 1) / (full - one)      e2e tokens/s = batch * N / full
The prompts are text only (`inputs.make_text_inputs`, `decode_batch` x `decode_prompt` tokens): a decode
step costs the same after an image prompt as after a text prompt of the same length (the image is just
cached keys and values), while an image prefill (measured on its own by the prefill section) would
dominate both calls and drown the difference that isolates decoding in noise.
The sessions extend the prefill ones, so one worker per framework serves both measurements.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lingshu_jax.bench import inputs as inputs_lib
from lingshu_jax.bench.harness import timed
from lingshu_jax.bench.prefill import HFPrefill, OursPrefill


def _decode_inputs(spec: dict[str, Any], config) -> dict[str, np.ndarray]:
    return inputs_lib.make_text_inputs(config, spec["decode_batch"], spec["decode_prompt"], spec.get("seed", 0) + 1)


def generate_available() -> bool:
    """Whether the generation module this benchmark calls exists (it is developed separately)."""
    import importlib.util

    return importlib.util.find_spec("lingshu_jax.infer.generate") is not None


class OursInference(OursPrefill):
    """Prefill + decode with our jitted generation program (prefill and the decode while_loop)."""

    def _generate(self, n: int) -> np.ndarray:
        from lingshu_jax.infer.generate import generate

        if not hasattr(self, "decode_inputs"):
            self.decode_inputs = _decode_inputs(self.spec, self.config)
        out = generate(self.config, self.model.params, self.decode_inputs, n, stop_token_ids=(), pad_token_id=0)
        tokens = np.asarray(out["tokens"])
        if tokens.shape[1] != n:
            raise RuntimeError(f"generate returned {tokens.shape[1]} tokens per row, expected {n}")
        return tokens

    def decode_first(self, max_new_tokens: int) -> dict[str, Any]:
        """Warm-up (compiles both programs); returns the tokens for the agreement check."""
        full_s, tokens = timed(lambda: self._generate(max_new_tokens))
        one_s, _ = timed(lambda: self._generate(1))
        return {"full_s": full_s, "one_s": one_s, "tokens": tokens}

    def decode(self, max_new_tokens: int) -> dict[str, float]:
        full_s, _ = timed(lambda: self._generate(max_new_tokens))
        one_s, _ = timed(lambda: self._generate(1))
        return {"full_s": full_s, "one_s": one_s}


class HFInference(HFPrefill):
    """Prefill + decode with `Qwen2_5_VLForConditionalGeneration.generate` (greedy, KV cache)."""

    def _generate(self, n: int) -> np.ndarray:
        from lingshu_jax.bench import common

        if not hasattr(self, "decode_inputs"):
            self.decode_inputs = common.torch_inputs(_decode_inputs(self.spec, self.config), self.device, None)
        x = self.decode_inputs
        with self.torch.inference_mode():
            out = self.model.generate(**x, do_sample=False, max_new_tokens=n, min_new_tokens=n, pad_token_id=0)
        common.torch_sync(self.device)
        tokens = out[:, x["input_ids"].shape[1]:].cpu().numpy()
        if tokens.shape[1] != n:
            raise RuntimeError(f"generate returned {tokens.shape[1]} tokens per row, expected {n}")
        return tokens

    def decode_first(self, max_new_tokens: int) -> dict[str, Any]:
        full_s, tokens = timed(lambda: self._generate(max_new_tokens))
        one_s, _ = timed(lambda: self._generate(1))
        return {"full_s": full_s, "one_s": one_s, "tokens": tokens}

    def decode(self, max_new_tokens: int) -> dict[str, float]:
        full_s, _ = timed(lambda: self._generate(max_new_tokens))
        one_s, _ = timed(lambda: self._generate(1))
        return {"full_s": full_s, "one_s": one_s}


def rates(runs: list[dict[str, float]], batch: int, max_new_tokens: int) -> dict[str, list[float]]:
    """Per-round decode and end-to-end tokens/s from {full_s, one_s} timings."""
    decode = [batch * (max_new_tokens - 1) / max(r["full_s"] - r["one_s"], 1e-9) for r in runs]
    e2e = [batch * max_new_tokens / r["full_s"] for r in runs]
    return {"decode_tok_s": decode, "e2e_tok_s": e2e, "per_token_s": [1 / (d / batch) for d in decode]}


def token_agreement(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Greedy tokens of both sides: fraction equal, and per row the length of the common prefix."""
    a, b = np.asarray(a), np.asarray(b)
    same = a == b
    prefix = [int(np.argmin(r)) if not r.all() else int(r.size) for r in same]
    return {"equal_fraction": float(same.mean()), "common_prefix": prefix, "tokens_per_row": int(a.shape[1])}
