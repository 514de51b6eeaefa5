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

from lingshu_jax.bench import common
from lingshu_jax.bench import inputs as inputs_lib
from lingshu_jax.bench.harness import timed
from lingshu_jax.bench.prefill import HFPrefill, OursPrefill


def _decode_inputs(spec: dict[str, Any], config) -> dict[str, np.ndarray]:
    return inputs_lib.make_text_inputs(
        config, spec["decode_batch"], spec["decode_prompt"], spec.get("seed", 0) + 1
    )


def generate_available() -> bool:
    """Whether the generation module this benchmark calls exists (it is developed separately)."""
    import importlib.util

    return importlib.util.find_spec("lingshu_jax.infer.generate") is not None


class OursInference(OursPrefill):
    """Prefill + decode with our jitted generation program (prefill and the decode while_loop)."""

    def _generate(self, n: int) -> np.ndarray:
        from lingshu_jax.infer.generate import generate_ids

        if not hasattr(self, "decode_inputs"):
            self.decode_inputs = _decode_inputs(self.spec, self.config)
        out = generate_ids(
            self.config, self.model.params, self.decode_inputs, n, stop_token_ids=(), pad_token_id=0
        )
        tokens = np.asarray(out["tokens"])
        if tokens.shape[1] != n:
            raise RuntimeError(f"generate returned {tokens.shape[1]} tokens per row, expected {n}")
        return tokens

    def decode_first(self, max_new_tokens: int) -> dict[str, Any]:
        """Warm-up (compiles both programs); returns the tokens for the agreement check."""
        full_s, tokens = timed(lambda: self._generate(max_new_tokens))
        one_s, _ = timed(lambda: self._generate(1))
        return {"full_s": full_s, "one_s": one_s, "tokens": tokens, "environment": common.jax_environment()}

    def decode(self, max_new_tokens: int) -> dict[str, float]:
        full_s, _ = timed(lambda: self._generate(max_new_tokens))
        one_s, _ = timed(lambda: self._generate(1))
        return {"full_s": full_s, "one_s": one_s}

    def breakdown(self, max_new_tokens: int, reps: int = 5) -> dict[str, Any]:
        """Roofline view of one decode step (batch x 1 token): the step as its own jitted program (outside
        generate's while_loop), the lm_head matmul alone, the bytes of weights a step must read, and the
        streaming bandwidth of this machine (a jitted scale of a 256 MiB array: read + write)."""
        import jax
        import jax.numpy as jnp

        from lingshu_jax.model.text import init_cache
        from lingshu_jax.model.vlm import Qwen25VL
        from lingshu_jax.train.flops import matmul_params

        cfg, b = self.config, int(self.spec["decode_batch"])
        cache_len = 64 * -(-(int(self.spec["decode_prompt"]) + max_new_tokens) // 64)
        module, params = Qwen25VL(cfg), self.model.params
        batch = {
            "input_ids": jnp.zeros((b, 1), jnp.int32),
            "segment_ids": jnp.ones((b, 1), jnp.int32),
            "position_ids": jnp.full((3, b, 1), int(self.spec["decode_prompt"]), jnp.int32),
        }
        cache = init_cache(cfg, b, cache_len)
        step = (
            jax.jit(lambda p, x, c: module.apply({"params": p}, x, c)).lower(params, batch, cache).compile()
        )
        head = params.get("lm_head", {}).get("kernel")
        if head is None:
            head = params["model"]["embed_tokens"]["embedding"].T
        h = jnp.ones((b, cfg.text.hidden_size), head.dtype)
        lm_head = jax.jit(lambda h, w: h @ w).lower(h, head).compile()
        big = jnp.ones((64 * 2**20,), jnp.float32)
        scale = jax.jit(lambda x: x * 1.0001).lower(big).compile()
        itemsize = jnp.dtype(cfg.param_dtype).itemsize
        n = matmul_params(cfg)
        out = {
            "step_s": _median_calls(lambda: jax.block_until_ready(step(params, batch, cache)), reps),
            "lm_head_s": _median_calls(lambda: jax.block_until_ready(lm_head(h, head)), reps),
            "weight_bytes": (n["text_layers"] + n["lm_head"]) * itemsize,
            "cache_len": cache_len,
        }
        copy_s = _median_calls(lambda: jax.block_until_ready(scale(big)), reps)
        out["stream_gb_s"] = 2 * big.size * 4 / copy_s / 1e9
        return out


def _median_calls(fn, reps: int) -> float:
    from lingshu_jax.bench.harness import median

    fn()
    return median([timed(fn)[0] for _ in range(max(1, reps))])


class HFInference(HFPrefill):
    """Prefill + decode with `Qwen2_5_VLForConditionalGeneration.generate` (greedy, KV cache)."""

    def calibrate(self) -> dict[str, Any]:
        """Thread counts for the prefill and for decoding (proxy: generating 4 tokens)."""
        out = super().calibrate()
        out["decode"] = self._calibrate("decode", lambda: self._generate(4))
        return out

    def _generate(self, n: int) -> np.ndarray:
        self._use_threads("decode")
        if not hasattr(self, "decode_inputs"):
            self.decode_inputs = common.torch_inputs(
                _decode_inputs(self.spec, self.config), self.device, None
            )
        x = self.decode_inputs
        with self.torch.inference_mode():
            out = self.model.generate(
                **x, do_sample=False, max_new_tokens=n, min_new_tokens=n, pad_token_id=0
            )
        common.torch_sync(self.device)
        tokens = out[:, x["input_ids"].shape[1] :].cpu().numpy()
        if tokens.shape[1] != n:
            raise RuntimeError(f"generate returned {tokens.shape[1]} tokens per row, expected {n}")
        return tokens

    def decode_first(self, max_new_tokens: int) -> dict[str, Any]:
        full_s, tokens = timed(lambda: self._generate(max_new_tokens))
        one_s, _ = timed(lambda: self._generate(1))
        return {"full_s": full_s, "one_s": one_s, "tokens": tokens, "environment": common.torch_environment()}

    def decode(self, max_new_tokens: int) -> dict[str, float]:
        full_s, _ = timed(lambda: self._generate(max_new_tokens))
        one_s, _ = timed(lambda: self._generate(1))
        return {"full_s": full_s, "one_s": one_s}

    def breakdown(self, max_new_tokens: int, reps: int = 5) -> dict[str, Any]:
        """Top ops (self CPU seconds) of one profiled generate call of `max_new_tokens`."""
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            self._generate(max_new_tokens)
        rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:6]
        return {
            "top_ops": [(r.key, r.self_cpu_time_total / 1e6, r.count) for r in rows],
            "torch_threads": self.torch.get_num_threads(),
        }


def rates(runs: list[dict[str, float]], batch: int, max_new_tokens: int) -> dict[str, list[float | None]]:
    """Per-round decode and end-to-end tokens/s from {full_s, one_s} timings. A round whose full call was
    not slower than the 1-token call (noise larger than the decode time) gives None, not a rate."""
    gaps = [r["full_s"] - r["one_s"] for r in runs]
    decode = [batch * (max_new_tokens - 1) / g if g > 0 else None for g in gaps]
    e2e = [batch * max_new_tokens / r["full_s"] for r in runs]
    return {
        "decode_tok_s": decode,
        "e2e_tok_s": e2e,
        "step_s": [g / (max_new_tokens - 1) if g > 0 else None for g in gaps],
    }


def token_agreement(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Greedy tokens of both sides: fraction equal, and per row the length of the common prefix."""
    a, b = np.asarray(a), np.asarray(b)
    same = a == b
    prefix = [int(np.argmin(r)) if not r.all() else int(r.size) for r in same]
    return {"equal_fraction": float(same.mean()), "common_prefix": prefix, "tokens_per_row": int(a.shape[1])}
