"""`prepare_inputs(..., vision_chunks=C)`: each group of B / C rows gets its own chunk of the vision stream
(what attention_impl="splash" needs, one chunk per device), and the model's logits equal the one-stream
batch's; rows with several images, none, or a video included."""

import jax
import numpy as np
import pytest
from PIL import Image

from lingshu_jax.model.config import preset
from lingshu_jax.model.vlm import Qwen25VL, chunk_stream_rows, init_params, media_per_row, prepare_inputs
from lingshu_jax.processing.image import ImageProcessor, VideoProcessor

SEQ = 40


@pytest.fixture(scope="module")
def config():
    return preset("tiny")


def _row(config, token_id, grids):
    """One left-padded row: text, then each image's (video's) run of pad tokens and text."""
    ids = [5, 6]
    for t, h, w in np.asarray(grids).reshape(-1, 3):
        ids += [token_id] * int(t * h * w // config.vision.merge_unit) + [7]
    return [0] * (SEQ - len(ids)) + ids, [0] * (SEQ - len(ids)) + [1] * len(ids)


def _inputs(config):
    """4 rows: two images; none; one image; one video (processor outputs, images and videos in row order)."""
    rng = np.random.default_rng(0)
    image = lambda h, w: Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))  # noqa: E731
    images = ImageProcessor(min_pixels=56 * 56, max_pixels=84 * 84)(
        [image(56, 84), image(60, 40), image(84, 84)]
    )
    frames = [rng.integers(0, 256, (56, 56, 3), dtype=np.uint8) for _ in range(4)]
    video = VideoProcessor(min_pixels=56 * 56, max_pixels=56 * 56)(frames)
    grid = images["image_grid_thw"]
    rows = [
        _row(config, config.image_token_id, grid[:2]),
        _row(config, config.image_token_id, grid[:0]),
        _row(config, config.image_token_id, grid[2:]),
        _row(config, config.video_token_id, video["video_grid_thw"]),
    ]
    return {
        "input_ids": np.asarray([r[0] for r in rows], np.int32),
        "attention_mask": np.asarray([r[1] for r in rows], np.int32),
        "pixel_values": images["pixel_values"],
        "image_grid_thw": grid,
        "pixel_values_videos": video["pixel_values_videos"],
        "video_grid_thw": video["video_grid_thw"],
        "second_per_grid_ts": video["second_per_grid_ts"],
    }


def _prepare(config, inputs, **kw):
    keys = ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "pixel_values_videos")
    keys += ("video_grid_thw", "second_per_grid_ts")
    return prepare_inputs(config, *(inputs[k] for k in keys), **kw)


def test_each_row_groups_images_stay_in_its_own_chunk_and_the_logits_equal_one_streams(config):
    inputs = _inputs(config)
    per_chunk = chunk_stream_rows(config, inputs, rows_per_chunk=2)
    assert min(per_chunk) > 0 and len(per_chunk) == 2  # chunk 0: two images; chunk 1: image + video
    budget = 2 * max(per_chunk)
    chunked = _prepare(config, inputs, patch_budget=budget, vision_chunks=2)
    whole = _prepare(config, inputs, patch_budget=budget)
    assert chunked["pixel_values"].shape == whole["pixel_values"].shape
    units = budget // 2 // config.vision.merge_unit  # merged tokens per chunk
    index = chunked["vision_token_index"]
    for group, rows in enumerate(([0, 1], [2, 3])):
        own = index[rows][index[rows] >= 0]
        assert len(own) and (own // units == group).all()
    np.testing.assert_array_equal(chunked["position_ids"], whole["position_ids"])
    for key in ("window_segments", "frame_segments"):  # unique across chunks: no segment spans two
        first, second = chunked[key][: budget // 2], chunked[key][budget // 2 :]
        assert not set(first) & set(second), key
    model = Qwen25VL(config)
    params = init_params(config, jax.random.key(0))
    apply = jax.jit(lambda p, b: model.apply({"params": p}, b)[0])
    real = inputs["attention_mask"].astype(bool)
    diff = np.abs(np.asarray(apply(params, chunked)) - np.asarray(apply(params, whole)))[real]
    assert diff.max() <= 1e-5


def test_chunks_that_do_not_divide_or_tokens_that_miss_their_images_are_refused(config):
    inputs = _inputs(config)
    with pytest.raises(ValueError, match="vision_chunks=3 must divide the batch's 4 rows"):
        _prepare(config, inputs, patch_budget=3 * 512, vision_chunks=3)
    ids = inputs["input_ids"].copy()
    ids[0, -1] = config.image_token_id  # one pad token more than row 0's images
    with pytest.raises(ValueError, match="row 0: its pad tokens"):
        media_per_row(ids, inputs["attention_mask"], inputs["image_grid_thw"], config.image_token_id, 4)
