"""The data benchmark's samples with videos (`--format mix_video`): mp4 files and frame folders in the
JSONL / Parquet mix, and transformers' side (read_video_pyav + its processor) producing exactly the tokens
our pipeline produces from them, so both sides do the same work."""

import json

from lingshu_jax.bench.data_measure import (
    MAX_PIXELS,
    MIN_PIXELS,
    DataBenchOptions,
    bench_hf,
    bench_ours,
    hf_processor,
)
from lingshu_jax.bench.data_samples import add_videos, in_formats, make_data
from lingshu_jax.model.config import preset
from lingshu_jax.processing.image import ImageProcessor
from lingshu_jax.processing.processor import Processor
from lingshu_jax.processing.tokenizer import Tokenizer
from lingshu_jax.testing.tokenizer import build_qwen_tokenizer


def test_mix_video_samples_give_both_sides_the_same_tokens(tmp_path):
    root = str(tmp_path)
    tok_dir = build_qwen_tokenizer(str(tmp_path / "tok"), vocab_size=1000)
    path = make_data(root, 8, side=56, tokens=40)
    assert add_videos(path, root, every=2, frames=6, rate=4, side=56) == 4
    with open(path) as f:
        videos = [json.loads(line).get("videos") for line in f]
    assert videos[1::2] == [["v1.mp4"], ["v3"], ["v5.mp4"], ["v7"]] and not any(videos[::2])
    ours_paths = in_formats(path, root, "mix_video")
    assert ours_paths[1].endswith(".parquet")
    processor = Processor(
        Tokenizer.from_pretrained(tok_dir), ImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    )
    args = DataBenchOptions(samples=8, seq_len=4096, patch_budget=16384, workers=0, warmup=0)
    ours = bench_ours(ours_paths, processor, preset("tiny"), args)
    hf = bench_hf(hf_processor(tok_dir, MIN_PIXELS, MAX_PIXELS), path, root)
    assert ours["samples"] == hf["samples"] == 8 and not ours["skipped"]
    assert ours["tokens"] == hf["tokens"]
