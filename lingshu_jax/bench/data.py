"""Input-pipeline throughput, ours (grain, `lingshu_jax.data`) vs transformers' Qwen2_5_VLProcessor.

The measurement itself is `scripts/bench_data.py`'s (`make_data`, `bench_ours`, `bench_hf`,
`hf_processor`), imported from its file; this module only runs it inside the benchmark's workers, so the
two sides are interleaved and their peak RSS (grain worker processes included) is attributable.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from typing import Any

MIN_PIXELS, MAX_PIXELS = 3136, 12845056  # Qwen2.5-VL hub preprocessor_config, as bench_data uses


def bench_data_module():
    """scripts/bench_data.py as a module (scripts/ is not a package)."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "scripts",
                        "bench_data.py")
    if not os.path.exists(path):
        raise ImportError(f"{path}: not found (the data-pipeline benchmark is developed separately)")
    spec = importlib.util.spec_from_file_location("lingshu_bench_data", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("make_data", "bench_ours", "bench_hf", "hf_processor"):
        if not hasattr(module, name):
            raise ImportError(f"{path}: has no function {name!r} (its interface changed?)")
    return module


class DataFiles:
    """Writes the shared samples (JPEGs + JSONL via `bench_data.make_data`) and the Qwen tokenizer once."""

    def __init__(self, root: str, samples: int, image_side: int, tokens: int):
        from lingshu_jax.testing.tokenizer import build_qwen_tokenizer

        self.root = root
        self.tok_dir = build_qwen_tokenizer(os.path.join(root, "tok"))
        self.path = bench_data_module().make_data(root, samples, image_side, tokens)

    def paths(self) -> dict[str, str]:
        return {"root": self.root, "tok_dir": self.tok_dir, "path": self.path}


class OursData:
    """`bench_data.bench_ours`: our pipeline from the JSONL to packed, model-ready batches."""

    def __init__(self, spec: dict[str, Any]):
        from absl import flags

        flags.FLAGS.mark_as_parsed()  # grain worker processes need parsed absl flags
        from lingshu_jax.model.config import preset
        from lingshu_jax.processing.image import ImageProcessor
        from lingshu_jax.processing.processor import Processor
        from lingshu_jax.processing.tokenizer import Tokenizer

        self.spec, self.module = spec, bench_data_module()
        self.processor = Processor(Tokenizer.from_pretrained(spec["tok_dir"]),
                                   ImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS))
        self.model_config = preset("qwen2.5-vl-7b")
        self.args = argparse.Namespace(seq_len=int(spec.get("seq_len", 8192)), batch_size=1, patch_budget=16384,
                                       workers=int(spec.get("data_workers", 2)))

    def run(self) -> dict[str, Any]:
        out = self.module.bench_ours(self.spec["path"], self.processor, self.model_config, self.args)
        if out["steady_samples"] <= 0:
            raise ValueError(f"data: all {out['samples']} samples fit in the first batch of {self.args.seq_len} "
                             "tokens; use more samples (or a shorter seq_len) to measure the steady rate")
        return {"samples_per_s": out.get("samples_per_s_steady", out["steady_samples"] / out["steady_s"]),
                "samples_per_s_incl_startup": out["samples"] / out["total_s"], "samples": out["samples"],
                "cpu_s": out.get("cpu_s"), "packing_efficiency": out.get("efficiency"),
                "workers": self.args.workers}


class HFData:
    """`bench_data.bench_hf`: chat template + tokenizer + PIL image processor, one process."""

    def __init__(self, spec: dict[str, Any]):
        self.spec, self.module = spec, bench_data_module()
        self.processor = self.module.hf_processor(spec["tok_dir"], MIN_PIXELS, MAX_PIXELS)

    def run(self) -> dict[str, Any]:
        out = self.module.bench_hf(self.processor, self.spec["path"], self.spec["root"])
        samples = int(self.spec["samples"])
        if isinstance(out, dict):  # scripts/bench_data.py from this commit on
            return {"samples_per_s": out["samples_per_s_steady"], "samples": samples,
                    "tokens_per_sample": out["tokens"] / samples,
                    "cpu_s": out["steady_cpu_ms_per_sample"] * samples / 1e3}
        seconds, tokens = out[0], out[-1]
        return {"samples_per_s": samples / seconds, "samples": samples, "tokens_per_sample": tokens / samples,
                "cpu_s": out[1] if len(out) == 3 else None}
