"""Videos through the data pipeline: frame folders and video files (PyAV) in LLaMA-Factory (`videos` +
`<video>`) and Qwen (`{"type": "video"}`) records, video_fps / video_max_frames setting the M-RoPE time
positions, packed with an image sample, and the packed batch's logits equal transformers' on the same video
conversation (for a video file: the frames transformers' `read_video_pyav` samples)."""

import os

import numpy as np
import pytest
import torch
import transformers

import lingshu_jax
from lingshu_jax.data import DataConfig, make_pipeline, unpack_batch
from lingshu_jax.model.rope import get_rope_index
from lingshu_jax.model.vlm import Qwen25VL
from lingshu_jax.processing import Processor
from tests.processing.helpers import transformers_video_code, write_video

from .helpers import write_jsonl, write_png

FRAMES = 6


def _clip(root, name="clip", n=FRAMES, size=(84, 56)):
    """n PNG frames named so that only a natural sort orders them (frame_2 before frame_10)."""
    for i in range(n):
        write_png(os.path.join(root, name, f"frame_{i * 5}.png"), size, seed=100 + i)
    return name


def _video_record(clip):
    return {
        "messages": [
            {"role": "user", "content": "<video>What moves?"},
            {"role": "assistant", "content": "The left lung base."},
        ],
        "videos": [clip],
    }


def _image_record():
    return {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image", "image": "im.png"}, {"type": "text", "text": "And here?"}],
            },
            {"role": "assistant", "content": [{"type": "text", "text": "Nothing."}]},
        ]
    }


@pytest.fixture(scope="module")
def tiny(tiny_hf_dir):
    ours = lingshu_jax.from_pretrained(tiny_hf_dir)
    hf = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(
        tiny_hf_dir, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    return ours, hf, Processor.from_pretrained(tiny_hf_dir)


def _pipeline(tmp_path, records, processor, model_config, **kw):
    path = write_jsonl(tmp_path / "d.jsonl", records)
    cfg = dict(
        sources=[{"name": "v", "path": str(path)}],
        seq_len=512,
        batch_size=1,
        patch_budget=1024,
        packing=True,
        shuffle=False,
        video_fps=4.0,
        video_max_frames=4,
    )
    cfg.update(kw)
    it = make_pipeline(DataConfig.from_dict(cfg), None, processor, model_config)
    batches = list(it)
    it.close()
    return batches, it.counters


def test_packed_video_batch_logits_match_transformers(tmp_path, tiny):
    ours, hf, processor = tiny
    write_png(str(tmp_path / "im.png"), (56, 56))
    clip = _clip(str(tmp_path))
    records = [_image_record(), _video_record(clip)]
    (batch,), counters = _pipeline(tmp_path, records, processor, ours.config, patch_budget=256)
    assert counters["samples"] == 2 and batch["segment_ids"].max() == 2  # image and video in one row
    # 6 frames at 4 fps, 4 kept (frames 0, 2, 3, 5): 1.5 s at 8/3 fps -> 0.75 s per temporal patch of 2.
    kept = [0, 2, 3, 5]
    frames = [
        lingshu_jax.processing.dicom.load_image(str(tmp_path / clip / f"frame_{i * 5}.png")) for i in kept
    ]
    messages = [
        {
            "role": "user",
            "content": [{"type": "video", "video": frames}, {"type": "text", "text": "What moves?"}],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "The left lung base."}]},
    ]
    ref_inputs = processor.encode_for_training(messages, video_fps=8 / 3)
    np.testing.assert_allclose(ref_inputs["second_per_grid_ts"], [0.75])
    assert _diff_to_transformers(ours, hf, batch, 2, ref_inputs) <= 1e-4
    sample = unpack_batch(batch)[1]
    # The time positions follow the sampled rate (a 1 s patch would place the second frame pair elsewhere).
    grid = np.asarray(ref_inputs["video_grid_thw"])
    kw = dict(
        image_token_id=ours.config.image_token_id,
        video_token_id=ours.config.video_token_id,
        spatial_merge_size=2,
        tokens_per_second=ours.config.vision.tokens_per_second,
        video_grid_thw=grid,
    )
    at_075 = get_rope_index(ref_inputs["input_ids"], second_per_grid_ts=[0.75], **kw)[0][:, 0]
    at_1 = get_rope_index(ref_inputs["input_ids"], second_per_grid_ts=[1.0], **kw)[0][:, 0]
    np.testing.assert_array_equal(sample["position_ids"], at_075)
    assert (at_075 != at_1).any()


def _logits_of_segment(ours, batch, segment):
    logits = Qwen25VL(ours.config).apply(
        {"params": ours.params}, {k: v for k, v in batch.items() if k not in ("labels", "loss_mask")}
    )[0]
    return np.asarray(logits)[0][np.asarray(batch["segment_ids"][0]) == segment]


def _diff_to_transformers(ours, hf, batch, segment, ref_inputs) -> float:
    """Max |our logits of packed segment `segment` - transformers' on `ref_inputs`|, after checking that the
    segment holds exactly transformers' tokens."""
    sample = unpack_batch(batch)[segment - 1]
    np.testing.assert_array_equal(sample["input_ids"], ref_inputs["input_ids"][0])
    keys = ("input_ids", "attention_mask", "mm_token_type_ids", "pixel_values_videos", "video_grid_thw")
    keys += ("second_per_grid_ts",)
    with torch.no_grad():
        ref = hf(**{k: torch.from_numpy(np.asarray(ref_inputs[k])) for k in keys}).logits.numpy()[0]
    got = _logits_of_segment(ours, batch, segment)
    assert got.shape == ref.shape
    return float(np.abs(got - ref).max())


def test_video_file_batch_logits_match_transformers_on_read_video_pyav_frames(tmp_path, tiny):
    ours, hf, processor = tiny
    write_video(tmp_path / "clip.mp4", n=12, rate=6, size=(56, 84))
    record = {**_video_record("clip.mp4")}
    (batch,), counters = _pipeline(
        tmp_path, [record], processor, ours.config, video_fps=3.0, video_max_frames=64
    )
    assert counters["samples"] == 1
    # transformers' reader and sampler: 12 frames at 6 fps sampled at 3 fps -> frames 0, 2, .., 10 at 3 fps.
    sample_frames, defaults = transformers_video_code("sample_frames")
    hf_self = type("S", (), {"num_frames": None, "fps": None, **defaults})()
    frames, meta = transformers.video_utils.read_video_pyav(
        str(tmp_path / "clip.mp4"), lambda metadata, **_: sample_frames(hf_self, metadata, fps=3.0)
    )
    assert list(meta.frames_indices) == [0, 2, 4, 6, 8, 10] and meta.sampled_fps == pytest.approx(3.0)
    messages = [
        {
            "role": "user",
            "content": [{"type": "video", "video": list(frames)}, {"type": "text", "text": "What moves?"}],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "The left lung base."}]},
    ]
    ref_inputs = processor.encode_for_training(messages, video_fps=meta.sampled_fps)
    np.testing.assert_allclose(ref_inputs["second_per_grid_ts"], [2 / 3])
    assert np.asarray(ref_inputs["video_grid_thw"])[0, 0] == 3  # 6 frames -> 3 temporal patches
    diff = _diff_to_transformers(ours, hf, batch, 1, ref_inputs)
    print(f"video file logits max abs diff vs transformers: {diff:.3g}")
    assert diff <= 1e-4
    # Capped at 4 frames: 0, 3, 6, 9 at 2 fps -> one second per temporal patch, 2 patches.
    (capped,), _ = _pipeline(tmp_path, [record], processor, ours.config, video_fps=3.0, video_max_frames=4)
    n_video = lambda bt: int((bt["input_ids"] == ours.config.video_token_id).sum())  # noqa: E731
    assert 3 * n_video(capped) == 2 * n_video(batch)


def test_qwen_video_parts_and_frame_lists_give_the_same_sample(tmp_path, tiny):
    ours, _, processor = tiny
    clip = _clip(str(tmp_path))
    files = [f"{clip}/frame_{i * 5}.png" for i in range(FRAMES)]
    qwen = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "video", "video": clip}, {"type": "text", "text": "What moves?"}],
            },
            {"role": "assistant", "content": "The left lung base."},
        ]
    }
    listed = {**_video_record(clip), "videos": [files]}  # a video given as its list of frame files
    a, _ = _pipeline(tmp_path, [_video_record(clip)], processor, ours.config)
    b, _ = _pipeline(tmp_path, [qwen], processor, ours.config)
    c, _ = _pipeline(tmp_path, [listed], processor, ours.config)
    for other in (b, c):
        for k in a[0]:
            if k != "stats":
                np.testing.assert_array_equal(a[0][k], other[0][k], err_msg=k)
    more, _ = _pipeline(tmp_path, [_video_record(clip)], processor, ours.config, video_max_frames=6)
    n_video = lambda bt: int((bt["input_ids"] == ours.config.video_token_id).sum())  # noqa: E731
    assert n_video(more[0]) == 3 * n_video(a[0]) // 2  # 3 temporal patches of 2 frames instead of 2


def test_bad_videos_are_counted_with_their_reason(tmp_path, tiny):
    ours, _, processor = tiny
    clip = _clip(str(tmp_path))
    (tmp_path / "clip.mp4").write_bytes(b"\x00" * 64)
    whole = open(write_video(tmp_path / "whole.avi"), "rb").read()
    (tmp_path / "cut.avi").write_bytes(whole[: len(whole) // 2])
    os.makedirs(tmp_path / "empty")
    records = [
        _video_record(clip),
        _video_record("nowhere"),
        _video_record("clip.mp4"),
        _video_record("empty"),
        {**_video_record(clip), "videos": []},
        _video_record("../outside"),
        _video_record("cut.avi"),
        _video_record("nowhere.mp4"),
    ]
    _, counters = _pipeline(tmp_path, records, processor, ours.config)
    assert counters["samples"] == 1
    assert counters["skipped/missing_image"] == 3  # no such folder or file, a folder without frames
    assert counters["skipped/corrupt_image"] == 2  # not a video file, a video file cut short
    assert counters["skipped/image_tag_mismatch"] == 1 and counters["skipped/path_escape"] == 1
    with pytest.raises(ValueError, match=r"d\.jsonl:3: video file 'clip.mp4': InvalidDataError"):
        _pipeline(tmp_path, [records[0], records[0], records[2]], processor, ours.config, on_error="error")
    with pytest.raises(ValueError, match=r"d\.jsonl:2: video file 'cut.avi': ValueError: .*ends after"):
        _pipeline(tmp_path, [records[0], records[6]], processor, ours.config, on_error="error")


def test_video_sample_too_long_is_dropped_even_under_truncate(tmp_path, tiny):
    ours, _, processor = tiny
    clip = _clip(str(tmp_path))
    long = {
        **_video_record(clip),
        "messages": [
            {"role": "user", "content": "<video>" + "why " * 80},
            {"role": "assistant", "content": "ok"},
        ],
    }
    _, counters = _pipeline(
        tmp_path, [long, _video_record(clip)], processor, ours.config, seq_len=64, truncation="truncate"
    )
    assert counters["skipped/too_long"] == 1 and counters["samples"] == 1
