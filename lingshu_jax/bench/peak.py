"""Machine peak FLOP/s for MFU: a square matmul in each framework, on the same machine, in the run.

On CPU there is no vendor number, so each framework measures an n x n x n matmul (`flops.measured_peak_flops`
for JAX, the same loop in torch); the report takes the larger of the two as the machine's peak, so both
frameworks' MFU are against one framework-neutral hardware figure. On GPU the vendor's dense bf16 peak
(`flops.peak_flops_per_device`) is used and the measured rates are reported beside it.

The train sessions inherit these classes, so the suite measures the peak in the train workers (no extra
processes) when it runs both sections.
"""

from __future__ import annotations

import time
from typing import Any


class OursPeak:
    def __init__(self, spec: dict[str, Any]):
        self.peak_spec = (int(spec.get("peak_n", 2048)), spec.get("peak_dtype", "float32"))

    def peak(self) -> float:
        from lingshu_jax.train.flops import measured_peak_flops

        n, dtype = self.peak_spec
        return measured_peak_flops(n, repeats=3, dtype=dtype)

    def environment(self) -> dict[str, Any]:
        from lingshu_jax.bench.common import jax_environment

        return jax_environment()


class HFPeak:
    def __init__(self, spec: dict[str, Any]):
        self.peak_spec = (
            int(spec.get("peak_n", 2048)),
            spec.get("peak_dtype", "float32"),
            spec.get("device", "cpu"),
        )

    def peak(self) -> float:
        """FLOP/s of an n^3 matmul, best of 3 (after one warm-up), as `measured_peak_flops` does; on CPU the
        best over 1 thread and all cores (see `common.calibrate_torch_threads`: on a busy machine 1 thread
        can be the faster, and the peak must not be below what the model itself reaches)."""
        import os

        import torch

        n, dtype, device = self.peak_spec
        if device != "cpu":
            return self._matmul(torch, torch.device(device), n, getattr(torch, dtype))
        before = torch.get_num_threads()
        best = 0.0
        for threads in sorted({1, os.cpu_count() or 1}):
            torch.set_num_threads(threads)
            best = max(best, self._matmul(torch, torch.device("cpu"), n, getattr(torch, dtype)))
        torch.set_num_threads(before)
        return best

    @staticmethod
    def _matmul(torch, device, n: int, dtype) -> float:
        from lingshu_jax.bench.common import torch_sync

        g = torch.Generator().manual_seed(0)  # random, as ours: constant data runs faster on GPUs
        a = torch.randn((n, n), generator=g).to(device=device, dtype=dtype)
        a @ a
        torch_sync(device)
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            a @ a
            torch_sync(device)
            best = min(best, time.perf_counter() - start)
        return 2 * n**3 / best

    def environment(self) -> dict[str, Any]:
        from lingshu_jax.bench.common import torch_environment

        return torch_environment()
