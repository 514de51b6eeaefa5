"""Prefill: one forward of the prompt batch (logits at every position), ours vs transformers.

Ours times `LingshuModel.__call__` end to end: host-side preparation (M-RoPE ids, window order of the
patches) plus the jitted forward, blocked until the logits are ready, because transformers does the
same work inside its forward. The host part is also reported on its own (`host_s`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from lingshu_jax.bench import common


class OursPrefill:
    def __init__(self, spec: dict[str, Any]):
        self.spec = spec
        self.model = common.load_ours(spec)
        self.config = self.model.config
        inputs = common.spec_inputs(spec, self.config)
        self.inputs = {k: v for k, v in inputs.items() if k != "labels"}

    def _forward(self):
        start = time.perf_counter()
        batch = self.model.prepare(**self.inputs)
        host = time.perf_counter()
        logits = self.model.logits(batch)
        logits.block_until_ready()
        return time.perf_counter() - start, host - start, logits

    def prefill_first(self) -> dict[str, Any]:
        """First call (compiles); returns its time and the last position's logits for the parity check."""
        t, host, logits = self._forward()
        return {
            "time_s": t,
            "host_s": host,
            "last_logits": np.asarray(logits[:, -1], np.float32),
            "environment": common.jax_environment(),
        }

    def prefill(self) -> dict[str, Any]:
        t, host, _ = self._forward()
        return {"time_s": t, "host_s": host}

    def device_memory(self):
        from lingshu_jax.bench.harness import jax_device_memory

        return jax_device_memory()


class HFPrefill:
    def __init__(self, spec: dict[str, Any]):
        from lingshu_jax.model.config import ModelConfig

        self.spec = spec
        self.torch, self.device, dtype = common.torch_setup(spec)
        self.model = common.load_hf(spec)
        self.config = ModelConfig.from_pretrained(spec["model_dir"])
        inputs = common.spec_inputs(spec, self.config)
        self.np_inputs = {k: v for k, v in inputs.items() if k != "labels"}
        self.inputs = common.torch_inputs(self.np_inputs, self.device, dtype)
        self.threads: dict[str, int] = {}  # workload -> calibrated torch thread count

    def _use_threads(self, workload: str) -> None:
        if workload in self.threads:
            self.torch.set_num_threads(self.threads[workload])

    def _calibrate(self, workload: str, proxy) -> dict[str, Any]:
        if self.device.type != "cpu" or self.spec.get("torch_threads"):
            return {"threads": self.torch.get_num_threads(), "calibrated": False}
        out = common.calibrate_torch_threads(self.torch, proxy)
        self.threads[workload] = out["threads"]
        return out

    def calibrate(self) -> dict[str, Any]:
        """Best torch thread count for the prefill (proxy: a forward of the batch's first row)."""
        n = int(self.inputs["image_grid_thw"][0].prod())
        row = {k: v[:1] for k, v in self.inputs.items() if k not in ("pixel_values", "image_grid_thw")}
        row.update(
            pixel_values=self.inputs["pixel_values"][:n], image_grid_thw=self.inputs["image_grid_thw"][:1]
        )

        def proxy():
            with self.torch.inference_mode():
                self.model(**row)

        return {"prefill": self._calibrate("prefill", proxy)}

    def _forward(self):
        self._use_threads("prefill")
        start = time.perf_counter()
        with self.torch.inference_mode():
            logits = self.model(**self.inputs).logits
        common.torch_sync(self.device)
        return time.perf_counter() - start, logits

    def prefill_first(self) -> dict[str, Any]:
        t, logits = self._forward()
        return {
            "time_s": t,
            "last_logits": logits[:, -1].float().cpu().numpy(),
            "environment": common.torch_environment(),
        }

    def prefill(self) -> dict[str, Any]:
        t, _ = self._forward()
        return {"time_s": t}

    def device_memory(self):
        from lingshu_jax.bench.harness import torch_device_memory

        return torch_device_memory()
