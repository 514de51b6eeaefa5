"""Input-pipeline throughput, ours (grain, `lingshu_jax.data`) vs transformers' Qwen2_5_VLProcessor.

Ours reads the samples as a mix of formats (the first half from JSONL + JPEG files, the rest from Parquet
with the images embedded, `data_samples.in_formats`), every 4th record a video (an mp4 file or a frame
folder, `data_samples.add_videos`); transformers reads the JSONL, the JPEG files and the videos.

The measurement itself is `data_measure`'s (`bench_ours`, `bench_hf`, `hf_processor`) on `data_samples`'
records; this module only runs it inside the benchmark's workers, so the two sides are interleaved and their
peak RSS (grain worker processes included) is attributable.
"""

from __future__ import annotations

import os
from typing import Any

from lingshu_jax.bench import data_measure
from lingshu_jax.bench.data_measure import MAX_PIXELS, MIN_PIXELS
from lingshu_jax.bench.data_samples import add_videos, in_formats, make_data


class DataFiles:
    """Writes the shared samples (JPEGs, videos + JSONL via `data_samples.make_data` / `add_videos`, plus our
    side's JSONL / Parquet mix) and the Qwen tokenizer once."""

    def __init__(self, root: str, samples: int, image_side: int, tokens: int):
        from lingshu_jax.testing.tokenizer import build_qwen_tokenizer

        self.root = root
        self.tok_dir = build_qwen_tokenizer(os.path.join(root, "tok"))
        self.path = make_data(root, samples, image_side, tokens)
        add_videos(self.path, root)
        self.ours_paths = in_formats(self.path, root, "mix_video")

    def paths(self) -> dict[str, Any]:
        return {"root": self.root, "tok_dir": self.tok_dir, "path": self.path, "ours_paths": self.ours_paths}


class OursData:
    """`data_measure.bench_ours`: our pipeline from the JSONL to packed, model-ready batches."""

    def __init__(self, spec: dict[str, Any]):
        from absl import flags

        flags.FLAGS.mark_as_parsed()  # grain worker processes need parsed absl flags
        from lingshu_jax.model.config import preset
        from lingshu_jax.processing.image import ImageProcessor
        from lingshu_jax.processing.processor import Processor
        from lingshu_jax.processing.tokenizer import Tokenizer

        self.spec = spec
        self.processor = Processor(
            Tokenizer.from_pretrained(spec["tok_dir"]),
            ImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS),
        )
        self.model_config = preset("qwen2.5-vl-7b")
        self.args = data_measure.DataBenchOptions(
            seq_len=int(spec.get("seq_len", 8192)),
            batch_size=1,
            patch_budget=16384,
            workers=int(spec.get("data_workers", 2)),
            warmup=0,
        )

    def run(self) -> dict[str, Any]:
        paths = self.spec.get("ours_paths") or self.spec["path"]
        out = data_measure.bench_ours(paths, self.processor, self.model_config, self.args)
        if out["steady_samples"] <= 0:
            raise ValueError(
                f"data: all {out['samples']} samples fit in the first batch of {self.args.seq_len} "
                "tokens; use more samples (or a shorter seq_len) to measure the steady rate"
            )
        return {
            "samples_per_s": out["samples_per_s_steady"],
            "samples_per_s_incl_startup": out["samples"] / out["total_s"],
            "samples": out["samples"],
            "cpu_s": out.get("cpu_s"),
            "packing_efficiency": out.get("efficiency"),
            "workers": self.args.workers,
        }


class HFData:
    """`data_measure.bench_hf`: chat template + tokenizer + PIL image processor, one process."""

    def __init__(self, spec: dict[str, Any]):
        self.spec = spec
        self.processor = data_measure.hf_processor(spec["tok_dir"], MIN_PIXELS, MAX_PIXELS)

    def run(self) -> dict[str, Any]:
        out = data_measure.bench_hf(self.processor, self.spec["path"], self.spec["root"])
        samples = int(self.spec["samples"])
        return {
            "samples_per_s": out["samples_per_s_steady"],
            "samples": samples,
            "tokens_per_sample": out["tokens"] / samples,
            "cpu_s": out["steady_cpu_ms_per_sample"] * samples / 1e3,
        }
