"""Logits of our Flax model equal transformers' Qwen2_5_VLForConditionalGeneration (fp32, eager).

Inputs come from our processor (its own parity with transformers' processor is tested in
tests/processing); both models get the same numpy arrays. Compared at non-padding positions.
"""

import json
import os

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

import lingshu_jax
from lingshu_jax.model.vision_inputs import stream_rows
from lingshu_jax.processing import Processor

TOL = 1e-4
DIFFS = {}  # case -> measured max abs diff, written to $LINGSHU_PARITY_REPORT if set


def _image(w, h, seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _user(*parts):
    content = [
        {"type": "image", "image": p} if isinstance(p, Image.Image) else {"type": "text", "text": p}
        for p in parts
    ]
    return {"role": "user", "content": content}


CASES = {
    "text_only": lambda: [[_user("What is the most likely diagnosis?")]],
    "one_image": lambda: [[_user(_image(84, 56, 1), "Describe the lesion.")]],
    "two_images_odd_sizes": lambda: [[_user(_image(101, 67, 2), "and", _image(45, 150, 3), "Compare.")]],
    "multi_turn": lambda: [
        [
            _user(_image(70, 70, 4), "What modality is this?"),
            {"role": "assistant", "content": [{"type": "text", "text": "A chest X-ray."}]},
            _user("Any pneumothorax?"),
        ]
    ],
    "left_padded_batch": lambda: [
        [_user(_image(56, 56, 5), "Short?")],
        [_user("A much longer question about", _image(90, 60, 6), "this scan, with more words in it.")],
    ],
    "image_below_min_pixels": lambda: [[_user(_image(20, 12, 7), "Tiny image.")]],
    "image_above_max_pixels": lambda: [[_user(_image(900, 700, 8), "Large image.")]],
}


@pytest.fixture(scope="module")
def models(tiny_hf_dir):
    hf = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(
        tiny_hf_dir, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    return hf, lingshu_jax.from_pretrained(tiny_hf_dir), Processor.from_pretrained(tiny_hf_dir)


def _compare(hf, ours, inputs, case):
    with torch.no_grad():
        ref = hf(**{k: torch.from_numpy(np.asarray(v)) for k, v in inputs.items()}).logits.numpy()
    got = np.asarray(ours(**inputs).logits)
    valid = np.asarray(inputs["attention_mask"]).astype(bool)
    diff = float(np.abs(got - ref)[valid].max())
    DIFFS[case] = diff
    return diff


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_match_transformers(models, case):
    hf, ours, processor = models
    inputs = processor(CASES[case](), add_generation_prompt=True)
    assert _compare(hf, ours, inputs, case) <= TOL


def test_block_local_vision_attention_matches_transformers(models):
    """Window layers in blocks of 64 patches, full layers over the key blocks that the largest image (its
    windows padded whole) reaches: several odd-sized images, each larger than a block, so the banded
    path (not the dense fallback) runs; a span one block too small gives NaN, never a wrong answer."""
    hf, ours, processor = models
    images = [_image(168, 168, 20), _image(224, 112, 21), _image(140, 196, 22)]
    inputs = processor([[_user(*images, "Compare the three.")]], add_generation_prompt=True)
    grid = np.asarray(inputs["image_grid_thw"])
    rows = lambda g: stream_rows(g, spatial_merge_size=2, window_merge_units=4)  # noqa: E731
    span = max(rows([g]) for g in grid)
    assert rows(grid) > 64 + 2 * span  # the full layers' key band sees less than the whole stream
    blocked = lingshu_jax.LingshuModel(ours.config.replace(vision_attention_span=span), ours.params)
    assert _compare(hf, blocked, inputs, "block_local_vision") <= TOL
    too_small = lingshu_jax.LingshuModel(ours.config.replace(vision_attention_span=span - 64), ours.params)
    with pytest.raises(
        ValueError, match=f"takes {span} vision-stream rows, more than model.vision_attention_span"
    ):
        too_small(**inputs)  # refused on the host, naming the image and the span
    batch = blocked.prepare(**{k: np.asarray(v) for k, v in inputs.items()})
    assert np.isnan(np.asarray(too_small.logits(batch))).all()  # on the device: NaN, never silently wrong


def test_full_vision_attention_per_stream_chunk_matches_transformers(models):
    """model.vision_attention_chunks=2: the full layers attend within each half of the stream, which
    `prepare` fills with each row's images (two odd-sized images in row 0, a larger one in row 1). A stream not laid
    out in chunks, where an image crosses the middle, gives NaN, never a wrong answer."""
    hf, ours, processor = models
    rows = [
        [_user(_image(101, 67, 30), "and", _image(45, 150, 31), "Compare.")],
        [_user("Here:", _image(280, 196, 32), "what is it?")],
    ]
    inputs = processor(rows, add_generation_prompt=True)
    chunked = lingshu_jax.LingshuModel(ours.config.replace(vision_attention_chunks=2), ours.params)
    batch = chunked.prepare(**{k: np.asarray(v) for k, v in inputs.items()})
    half = len(batch["frame_segments"]) // 2
    assert batch["frame_segments"][half - 1] != batch["frame_segments"][half]
    assert _compare(hf, chunked, inputs, "vision_chunks") <= TOL
    one_stream = chunked.prepare(**{k: np.asarray(v) for k, v in inputs.items()}, vision_chunks=1)
    segments = one_stream["frame_segments"]
    middle = (len(segments) + -len(segments) % 128) // 2  # the model pads the stream to 2 chunks of windows
    assert segments[middle - 1] == segments[middle]  # an image crosses the chunks' boundary
    assert np.isnan(np.asarray(chunked.logits(one_stream))).all()


def test_video_logits_match_transformers(models):
    hf, ours, processor = models
    frames = [_image(56, 84, 10 + i) for i in range(4)]
    messages = [
        {
            "role": "user",
            "content": [{"type": "video", "video": frames}, {"type": "text", "text": "Describe."}],
        }
    ]
    inputs = processor(messages, video_fps=2.0)
    assert "pixel_values_videos" in inputs and "second_per_grid_ts" in inputs
    assert _compare(hf, ours, inputs, "video") <= TOL


def test_bf16_compute_within_relative_tolerance(models, tiny_hf_dir):
    hf, ours, processor = models
    inputs = processor(CASES["two_images_odd_sizes"]())
    bf16 = lingshu_jax.from_pretrained(tiny_hf_dir, dtype="bfloat16", param_dtype="float32")
    ref = np.asarray(ours(**inputs).logits)
    got = np.asarray(bf16(**inputs).logits, np.float32)
    rel = float(np.abs(got - ref).max() / np.abs(ref).max())
    DIFFS["bf16_relative_to_max_logit"] = rel
    assert rel <= 3e-2  # bf16 has 8 mantissa bits; measured ~1.3e-2 on this model


def teardown_module(module):
    out = os.environ.get("LINGSHU_PARITY_REPORT")
    if out:
        with open(out, "w") as f:
            json.dump(DIFFS, f, indent=2)


def test_from_pretrained_onto_a_mesh_shards_params_and_keeps_logits(models, tiny_hf_dir):
    from lingshu_jax import sharding

    hf, ours, processor = models
    mesh = sharding.make_mesh({"fsdp": 4, "tensor": 2})
    sharded = lingshu_jax.from_pretrained(tiny_hf_dir, mesh=mesh)
    kernel = sharded.params["model"]["layers"]["mlp"]["gate_proj"]["kernel"]
    assert tuple(kernel.sharding.spec) == (None, "fsdp", "tensor")
    assert kernel.addressable_shards[0].data.shape == (2, 16, 64)  # [L, D/4, I/2] of [2, 64, 128]
    inputs = processor(CASES["one_image"]())
    np.testing.assert_allclose(
        np.asarray(sharded(**inputs).logits), np.asarray(ours(**inputs).logits), atol=1e-5
    )


def test_splash_attention_logits_match_transformers(models):
    """attention_impl="splash" (Pallas interpret mode on CPU) in the decoder and the vision full layers."""
    hf, ours, processor = models
    splash = lingshu_jax.LingshuModel(ours.config.replace(attention_impl="splash"), ours.params)
    inputs = processor(CASES["two_images_odd_sizes"](), add_generation_prompt=True)
    assert _compare(hf, splash, inputs, "splash_two_images") <= TOL
