"""Input-pipeline throughput: ours (grain, N worker processes) vs transformers' Qwen2_5_VLProcessor.

The measurement and its data live in `lingshu_jax.bench.data_measure` / `lingshu_jax.bench.data_samples`
(see there for how the rates, CPU and per-stage costs are measured); this script parses the flags.

  python scripts/bench_data.py --workers 2,0          # the issue's figure: ratio with 2 workers
  python scripts/bench_data.py --workers 2 --pixel_dtype float32   # pixels normalised on the host
  python scripts/bench_data.py --mixed 600       # packing efficiency on caption + VQA + text-only data
  python scripts/bench_data.py --format parquet  # ours reads all samples from Parquet (default: mix, half each)
  python scripts/bench_data.py --format mix_video  # the mix with every 4th record a video (mp4 / frame folder)
"""

from __future__ import annotations

import argparse

from lingshu_jax.bench.data_measure import DataBenchOptions, run_report


def parse_args(argv=None) -> DataBenchOptions:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=800)
    ap.add_argument(
        "--workers", default="2", help="comma list of worker counts to time (0 = in-process threads)"
    )
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (the ratio is their median)")
    ap.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="samples left out of the rate (default: twice what the pipeline can hold ahead of delivery, "
        "data_measure.default_warmup)",
    )
    ap.add_argument("--image", type=int, default=448)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--seq_len", type=int, default=8192)
    ap.add_argument("--batch_size", type=int, default=1)
    ap.add_argument("--patch_budget", type=int, default=16384)
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--mixed", type=int, default=0, help="only report packing efficiency on N mixed records")
    ap.add_argument("--pixel_dtype", default="uint8", choices=("uint8", "float32"), help="data.pixel_dtype")
    ap.add_argument("--stages", type=int, default=120, help="records timed stage by stage (0: none)")
    ap.add_argument(
        "--format",
        default="mix",
        choices=("jsonl", "parquet", "mix", "mix_video"),
        help="what ours reads: JSONL + JPEGs, Parquet (images embedded), mix (first half JSONL, rest Parquet), "
        "mix_video (mix with every 4th record a video: mp4 files and frame folders)",
    )
    ap.add_argument("--video_fps", type=float, default=2.0, help="data.video_fps (both sides)")
    a = ap.parse_args(argv)
    counts = tuple(int(w) for w in a.workers.split(","))
    fields = {k: v for k, v in vars(a).items() if k not in ("workers", "json")}
    return DataBenchOptions(**fields, worker_counts=counts, workers=counts[0], json_out=a.json)


def main(argv=None) -> None:
    run_report(parse_args(argv))


if __name__ == "__main__":
    main()
