"""uint8 pixel rows + the processor's affine (normalised on the device) give the float path's logits; the
host-side vision-stream preparation only permutes and pads them, so they stay uint8."""

import dataclasses

import jax
import numpy as np
import pytest
from PIL import Image

from lingshu_jax.model.config import preset
from lingshu_jax.model.vision_inputs import build_vision_stream
from lingshu_jax.model.vlm import Qwen25VL, init_params, prepare_inputs
from lingshu_jax.processing.image import ImageProcessor, VideoProcessor


@pytest.fixture(scope="module")
def config():
    return preset("tiny")


def _images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((56, 84), (75, 40))]


def _ids(config, grid):
    """[1, S] token ids: text, then each image's run of pad tokens followed by text."""
    ids = [5, 6, 7]
    for t, h, w in np.asarray(grid):
        ids += [config.image_token_id] * int(t * h * w // config.vision.merge_unit) + [20, 21]
    return np.asarray([ids], np.int32)


def _batches(config, patch_budget=None):
    """The same images as float rows and as uint8 rows -> (float batch, uint8 batch)."""
    proc = ImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112)
    as_float = proc(_images())
    as_uint8 = dataclasses.replace(proc, output="uint8")(_images())
    ids = _ids(config, as_float["image_grid_thw"])
    prep = lambda out, **kw: prepare_inputs(  # noqa: E731
        config, ids, None, out["pixel_values"], out["image_grid_thw"], patch_budget=patch_budget, **kw
    )
    return prep(as_float), prep(as_uint8, pixel_normalization=proc.normalization)


@pytest.mark.parametrize("patch_budget", [None, 192])
def test_uint8_pixels_with_the_affine_give_the_float_logits(config, patch_budget):
    float_batch, uint8_batch = _batches(config, patch_budget)
    assert uint8_batch["pixel_values"].dtype == np.uint8 and float_batch["pixel_values"].dtype == np.float32
    assert uint8_batch["pixel_scale"].shape == uint8_batch["pixel_offset"].shape == (1176,)
    assert "pixel_scale" not in float_batch
    model = Qwen25VL(config)
    params = init_params(config, jax.random.key(0))
    apply = jax.jit(lambda p, b: model.apply({"params": p}, b)[0])
    want, got = np.asarray(apply(params, float_batch)), np.asarray(apply(params, uint8_batch))
    assert np.abs(got - want).max() <= 1e-5


def test_host_stream_permutes_uint8_rows_without_converting_them(config):
    float_batch, uint8_batch = _batches(config, patch_budget=192)
    for key in ("vision_pos", "window_segments", "frame_segments", "vision_token_index"):
        np.testing.assert_array_equal(uint8_batch[key], float_batch[key], err_msg=key)
    out = ImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112, output="uint8")(_images())
    rows, grid = out["pixel_values"], out["image_grid_thw"]
    stream = build_vision_stream(rows, grid, spatial_merge_size=2, window_merge_units=4, patch_budget=192)
    as_float = build_vision_stream(
        rows.astype(np.float32), grid, spatial_merge_size=2, window_merge_units=4, patch_budget=192
    )
    assert stream.pixel_values.dtype == np.uint8
    np.testing.assert_array_equal(stream.pixel_values, as_float.pixel_values)
    np.testing.assert_array_equal(stream.pixel_values, uint8_batch["pixel_values"])
    real = (stream.unit_position[:, None] * 4 + np.arange(4)).reshape(-1)
    assert len(real) == len(rows) and not np.delete(stream.pixel_values, real, axis=0).any()  # padding: 0


def test_uint8_pixels_without_their_affine_are_refused(config):
    out = ImageProcessor(output="uint8")(_images()[:1])
    ids = _ids(config, out["image_grid_thw"])
    with pytest.raises(ValueError, match="pixel_normalization"):
        prepare_inputs(config, ids, None, out["pixel_values"], out["image_grid_thw"])
    video = VideoProcessor(min_pixels=56 * 56, max_pixels=56 * 56)([np.zeros((56, 56, 3), np.uint8)] * 2)
    with pytest.raises(ValueError, match="all uint8 or all float"):
        prepare_inputs(
            config,
            np.concatenate([ids, [[config.video_token_id] * 4]], axis=1),
            None,
            out["pixel_values"],
            out["image_grid_thw"],
            video["pixel_values_videos"],
            video["video_grid_thw"],
            pixel_normalization=ImageProcessor().normalization,
        )
    _, uint8_batch = _batches(config)
    del uint8_batch["pixel_scale"]
    model = Qwen25VL(config)
    params = init_params(config, jax.random.key(0))
    with pytest.raises(ValueError, match="pixel_scale and pixel_offset"):
        model.apply({"params": params}, uint8_batch)
