"""Machine peak FLOP/s for MFU: a square matmul in each framework, on the same machine, in the run.

On CPU there is no vendor number, so each framework measures an n x n x n matmul (`flops.measured_peak_flops`
for JAX, the same loop in torch); the report takes the larger of the two as the machine's peak, so both
frameworks' MFU are against one framework-neutral hardware figure. On GPU the vendor's dense bf16 peak
(`flops.peak_flops_per_device`) is used and the measured rates are reported beside it.
"""

from __future__ import annotations

import time
from typing import Any


class OursPeak:
    def __init__(self, spec: dict[str, Any]):
        self.n, self.dtype = int(spec.get("peak_n", 2048)), spec.get("peak_dtype", "float32")

    def run(self) -> float:
        from lingshu_jax.train.flops import measured_peak_flops

        return measured_peak_flops(self.n, repeats=3, dtype=self.dtype)

    def environment(self) -> dict[str, Any]:
        from lingshu_jax.bench.common import jax_environment

        return jax_environment()


class HFPeak:
    def __init__(self, spec: dict[str, Any]):
        from lingshu_jax.bench import common

        self.torch, self.device, _ = common.torch_setup(spec)
        self.n, self.dtype = int(spec.get("peak_n", 2048)), getattr(self.torch, spec.get("peak_dtype", "float32"))

    def run(self) -> float:
        """FLOP/s of an n^3 matmul, best of 3 (after one warm-up), as `measured_peak_flops` does."""
        from lingshu_jax.bench.common import torch_sync

        torch, n = self.torch, self.n
        a = torch.ones((n, n), dtype=self.dtype, device=self.device)
        a @ a
        torch_sync(self.device)
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            a @ a
            torch_sync(self.device)
            best = min(best, time.perf_counter() - start)
        return 2 * n**3 / best

    def environment(self) -> dict[str, Any]:
        from lingshu_jax.bench.common import torch_environment

        return torch_environment()
