"""Packing: first-fit rows under one patch budget, and packed segments equal the unpacked samples."""

import numpy as np
import pytest

from lingshu_jax.data import BatchBuilder, ErrorPolicy, make_pipeline, unpack_batch
from lingshu_jax.data.transforms import SampleTransform
from lingshu_jax.model import vision_inputs
from lingshu_jax.processing.image import PixelNormalization

from .helpers import data_config, mixed_dataset


def _fake(n, patches=0, grid=None, token=5, dtype=np.float32):
    """A sample of n tokens; `patches` pixel rows (value `token`) of one image with `grid`."""
    ids = np.full(n, token, np.int32)
    return {
        "input_ids": ids,
        "labels": ids.copy(),
        "position_ids": np.tile(np.arange(n, dtype=np.int32), (3, 1)),
        "pixel_values": np.full((patches, 1176), token, dtype),
        "image_grid_thw": np.asarray([grid] if grid else np.zeros((0, 3)), np.int32).reshape(-1, 3),
        "stats": {"samples": 1},
    }


def _builder(**kw):
    base = dict(
        batch_size=2,
        seq_len=10,
        patch_budget=0,
        segments_per_row=10,
        pad_id=0,
        image_token_id=99,
        video_token_id=98,
        merge_size=2,
        window_merge_units=4,
    )
    base.update(kw)
    return BatchBuilder(**base)


def test_first_fit_rows_segments_and_positions():
    b = _builder()
    for n, tok in [(6, 1), (6, 2), (3, 3), (1, 4)]:
        assert b.add(_fake(n, token=tok))
    assert not b.add(_fake(5))  # rows hold 10 and 6 tokens: no room for 5
    batch = b.build()
    np.testing.assert_array_equal(batch["input_ids"], [[1] * 6 + [3] * 3 + [4], [2] * 6 + [0] * 4])
    np.testing.assert_array_equal(batch["segment_ids"], [[1] * 6 + [2] * 3 + [3], [1] * 6 + [0] * 4])
    np.testing.assert_array_equal(batch["position_ids"][0, 0], [0, 1, 2, 3, 4, 5, 0, 1, 2, 0])
    np.testing.assert_array_equal(batch["loss_mask"][1], [1] * 6 + [0] * 4)
    assert batch["labels"][1, 6:].tolist() == [-100] * 4
    assert batch["stats"]["tokens/real"] == 16 and batch["stats"]["tokens/total"] == 20
    assert "pixel_values" not in batch  # patch_budget 0: text-only batches


def test_unpacked_mode_puts_one_sample_per_row():
    b = _builder(segments_per_row=1)
    assert b.add(_fake(3)) and b.add(_fake(3)) and not b.add(_fake(3))


def test_patch_budget_closes_the_batch_and_pads_the_stream():
    b = _builder(patch_budget=128, seq_len=12)
    s = _fake(6, patches=16, grid=(1, 4, 4))  # 16 patches = 4 merged tokens, one window: 64 stream rows
    s["input_ids"][1:5] = 99
    assert b.add(s)
    assert not b.add(_fake(2, patches=80, grid=(1, 4, 20)))  # 3 windows: 64 + 192 > 128, next batch
    assert b.add(_fake(2))  # text-only still fits
    batch = b.build()
    assert batch["pixel_values"].shape == (128, 1176)
    assert batch["frame_segments"].tolist() == [0] * 16 + list(range(1, 113))  # one segment per padding row
    assert batch["vision_token_index"][0, :6].tolist() == [-1, 0, 1, 2, 3, -1]
    assert batch["stats"]["patches/real"] == 16


def test_uint8_batches_keep_uint8_rows_and_carry_the_affine():
    norm = PixelNormalization()
    b = _builder(patch_budget=64, seq_len=12, pixel_normalization=norm)
    s = _fake(6, patches=16, grid=(1, 4, 4), token=7, dtype=np.uint8)
    s["input_ids"][1:5] = 99
    assert b.add(s)
    batch = b.build()
    assert batch["pixel_values"].dtype == np.uint8 and batch["pixel_values"].shape == (64, 1176)
    assert (batch["pixel_values"][:16] == 7).all() and not batch["pixel_values"][16:].any()  # zero padding
    scale, offset = norm.column_scale_and_offset(1176)
    np.testing.assert_array_equal(batch["pixel_scale"], scale)
    np.testing.assert_array_equal(batch["pixel_offset"], offset)
    text_only = _builder(patch_budget=32, pixel_normalization=norm)
    assert text_only.add(_fake(3))  # a text-only batch keeps the same keys and dtypes (one compile)
    batch = text_only.build()
    assert batch["pixel_values"].dtype == np.uint8 and "pixel_scale" in batch
    mixed = _builder(patch_budget=64, seq_len=12, pixel_normalization=norm)
    assert mixed.add(_fake(2, patches=16, grid=(1, 4, 4)))  # float32 rows
    with pytest.raises(ValueError, match="float32 pixel rows in a uint8 batch"):
        mixed.build()


@pytest.mark.parametrize("grid", [(1, 8, 8), (1, 16, 12), (1, 6, 10), (2, 12, 8), (1, 2, 2)])
def test_batch_pixel_rows_equal_the_vision_stream_of_its_images(grid):
    """The builder moves each sample's merge units straight to their stream rows: the same rows as
    vision_inputs builds from the pixels (full and partial windows, several frames, two samples)."""
    rng = np.random.default_rng(0)
    b = _builder(patch_budget=1024, seq_len=400)
    samples = [_fake(4, patches=int(np.prod(grid)), grid=grid) for _ in range(2)]
    for s in samples:
        s["pixel_values"] = rng.normal(size=s["pixel_values"].shape).astype(np.float32)
        s["input_ids"] = np.full(int(np.prod(grid)) // 4, 99, np.int32)
        s["labels"], s["position_ids"] = s["input_ids"], np.zeros((3, len(s["input_ids"])), np.int32)
        assert b.add(s)
    batch = b.build()
    want = vision_inputs.build_vision_stream(
        np.concatenate([s["pixel_values"] for s in samples]),
        np.asarray([grid, grid]),
        spatial_merge_size=2,
        window_merge_units=4,
        patch_budget=1024,
    )
    np.testing.assert_array_equal(batch["pixel_values"], want.pixel_values)
    np.testing.assert_array_equal(batch["window_segments"], want.window_segments)


def _all_samples(it):
    out = []
    for batch in it:
        out.extend(unpack_batch(batch))
    return out


def test_packed_segments_equal_unpacked_samples(tmp_path, processor, model_config, ops):
    path = mixed_dataset(str(tmp_path), n=18)
    packed = _all_samples(
        make_pipeline(data_config(path, packing=True), None, processor, model_config, seed=3)
    )
    unpacked = _all_samples(
        make_pipeline(data_config(path, packing=False, batch_size=3), None, processor, model_config, seed=3)
    )
    assert len(packed) == len(unpacked) == 18
    key = lambda s: s["input_ids"].tobytes()  # noqa: E731
    unpacked = {key(s): s for s in unpacked}
    transform = SampleTransform(
        ops=ops,
        policy=ErrorPolicy("error"),
        seq_len=256,
        patch_budget=256,
        roots=[str(tmp_path)],
        names=["mixed"],
    )
    direct = {}
    with open(path) as f:
        for i, line in enumerate(f):
            s = transform({"data": line, "where": f"{path}:{i + 1}", "source": 0})
            direct[key(s)] = s
    for p in packed:
        u, d = unpacked[key(p)], direct[key(p)]
        for k in p:
            np.testing.assert_array_equal(p[k], u[k], err_msg=k)
        np.testing.assert_array_equal(p["labels"], d["labels"])
        np.testing.assert_array_equal(p["position_ids"], d["position_ids"])
        if len(d["image_grid_thw"]):  # the sample's own vision stream, as vision_inputs builds it alone
            want = vision_inputs.build_vision_stream(
                d["pixel_values"], d["image_grid_thw"], spatial_merge_size=2, window_merge_units=4
            )
            for k, v in want.as_dict().items():
                np.testing.assert_array_equal(p[k], v, err_msg=k)
            np.testing.assert_array_equal(
                p["vision_token_index"],
                vision_inputs.vision_token_index(
                    d["input_ids"][None],
                    want.unit_position,
                    image_token_id=model_config.image_token_id,
                    video_token_id=model_config.video_token_id,
                    num_image_units=len(want.unit_position),
                )[0],
            )
        else:
            assert "pixel_values" not in p or len(p["pixel_values"]) == 0


def test_packing_efficiency_on_mixed_caption_vqa_text(tmp_path, processor, model_config):
    """~100-token samples in 512-token rows: one per row fills ~20%, packing ~88% (last batch partial)."""
    path = mixed_dataset(str(tmp_path), n=96)
    stats = {}
    for packing in (False, True):
        it = make_pipeline(
            data_config(path, packing=packing, seq_len=512, patch_budget=1024), None, processor, model_config
        )
        _ = list(it)
        stats[packing] = it.packing_efficiency
        assert it.counters["segments"] == 96
    assert stats[True] > 0.85 and stats[False] < 0.25


def _image_sample(token):
    """6 tokens (4 image pads for one 4x4-patch image: one 64-row window in the stream) + its pixels."""
    s = _fake(6, patches=16, grid=(1, 4, 4), token=token)
    s["input_ids"][:4] = 99
    return s


def test_vision_chunks_keep_each_rows_images_in_its_own_chunk():
    """vision_chunks=2 over 4 rows: rows 0-1 fill chunk 0 (stream rows 0-127), rows 2-3 chunk 1; segments
    and merged-token indices never cross the chunk boundary (a device's shard under splash)."""
    b = _builder(batch_size=4, seq_len=6, segments_per_row=1, patch_budget=256, vision_chunks=2)
    for token in (1, 2, 3, 4):
        assert b.add(_image_sample(token))
    assert not b.add(_image_sample(5))
    batch = b.build()
    pixels, frames, index = batch["pixel_values"][:, 0], batch["frame_segments"], batch["vision_token_index"]
    for row, token in enumerate((1, 2, 3, 4)):
        chunk = slice(0, 128) if row < 2 else slice(128, 256)
        assert (pixels[chunk] == token).sum() == 16 and (pixels == token).sum() == 16
        merged = index[row][index[row] >= 0]
        assert len(merged) == 4 and all(chunk.start // 4 <= m < chunk.stop // 4 for m in merged)
    assert not set(frames[:128]) & set(frames[128:])


def test_vision_chunks_bound_each_row_group_and_must_divide_the_batch():
    b = _builder(batch_size=2, seq_len=30, segments_per_row=1, patch_budget=256, vision_chunks=2)
    with pytest.raises(ValueError, match="2 vision_chunks"):
        b.check(_fake(2, patches=80, grid=(1, 4, 20)))  # 3 windows = 192 rows > a chunk's 128
    with pytest.raises(ValueError, match="data.vision_chunks=3"):
        _builder(batch_size=2, patch_budget=256, vision_chunks=3)
