"""Shared by the task modules: loading each framework's model from the benchmark checkpoint, and the
inputs in each framework's form. `spec` is the plain dict a worker receives (see `suite.task_spec`)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from lingshu_jax.bench import inputs as inputs_lib


def spec_inputs(spec: dict[str, Any], config) -> dict[str, np.ndarray]:
    return inputs_lib.make_inputs(config, spec["batch"], spec["seq"], spec["image_side"], spec.get("seed", 0))


# ------------------------------------------------------------------------------------------ ours


def load_ours(spec: dict[str, Any]):
    """`LingshuModel` from the benchmark checkpoint with the spec's execution policy."""
    from lingshu_jax.api import from_pretrained

    return from_pretrained(
        spec["model_dir"],
        dtype=spec["dtype"],
        param_dtype=spec.get("param_dtype") or spec["dtype"],
        attention_impl=spec.get("attention_impl", "xla"),
        vision_attention_span=spec.get("vision_attention_span"),
        vision_attention_chunks=spec.get("vision_attention_chunks", 1),
        remat_policy=spec.get("remat_policy", "none"),
        vision_remat_policy=spec.get("vision_remat_policy", spec.get("remat_policy", "none")),
        unroll_layers=spec.get("unroll_layers", False),
        vision_unroll_layers=spec.get("vision_unroll_layers", False),
    )


def jax_environment() -> dict[str, Any]:
    import jax
    import jaxlib

    dev = jax.devices()[0]
    return {
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "backend": jax.default_backend(),
        "device_kind": dev.device_kind,
        "device_count": jax.device_count(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


# ------------------------------------------------------------------------------------------ transformers


def torch_setup(spec: dict[str, Any]):
    """Imports torch, applies the thread count, returns (torch, device, dtype)."""
    import torch

    if spec.get("torch_threads"):
        torch.set_num_threads(int(spec["torch_threads"]))
    device = torch.device(spec.get("device", "cpu"))
    return torch, device, getattr(torch, spec["dtype"])


def load_hf(spec: dict[str, Any], train: bool = False):
    """transformers' `Qwen2_5_VLForConditionalGeneration` from the benchmark checkpoint."""
    import transformers

    torch, device, dtype = torch_setup(spec)
    model = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(
        spec["model_dir"], dtype=dtype, attn_implementation=spec.get("hf_attn", "sdpa")
    ).to(device)
    return model.train() if train else model.eval()


def calibrate_torch_threads(torch, fn, candidates=None, reps: int = 2) -> dict[str, Any]:
    """Gives transformers its best CPU thread count for a workload: times `fn` (a small proxy of it) under
    each candidate count (1 and all cores) and keeps the fastest: decided by the first calls when one is
    1.5x faster, else by `reps` more interleaved calls.

    On a machine shared with other jobs, torch's OpenMP threads can lose whole time slices waiting for one
    another at every op (measured here: a 4 x 128-token prefill 0.34 s on 1 thread vs 2.7 s on 2), so the
    default is not always its best; the choice and the timings go into the report."""
    from lingshu_jax.bench.harness import median, timed

    candidates = sorted(set(candidates or (1, os.cpu_count() or 1)))
    times: dict[int, list[float]] = {n: [] for n in candidates}
    for n in candidates:  # first calls (warm-up); a clear winner (1.5x) already decides
        torch.set_num_threads(n)
        times[n].append(timed(fn)[0])
    first = [times[n][0] for n in candidates]
    if max(first) < 1.5 * min(first):
        times = {n: [] for n in candidates}
        for _ in range(reps):
            for n in candidates:
                torch.set_num_threads(n)
                times[n].append(timed(fn)[0])
    best = min(candidates, key=lambda n: median(times[n]))
    torch.set_num_threads(best)
    return {"threads": best, "median_s": {str(n): median(v) for n, v in times.items()}}


def torch_inputs(inputs: dict[str, np.ndarray], device, dtype, keys=None) -> dict[str, Any]:
    """numpy -> torch tensors on `device`; float arrays (pixels) in `dtype`."""
    import torch

    out = {}
    for k, v in inputs.items():
        if keys is not None and k not in keys:
            continue
        t = torch.from_numpy(np.ascontiguousarray(v))
        out[k] = t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device)
    return out


def torch_sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def torch_environment() -> dict[str, Any]:
    import torch
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
