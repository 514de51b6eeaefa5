"""Host-side vision stream equals transformers' window index / rotary ids; bad inputs raise clearly."""

import numpy as np
import pytest
import torch
from transformers import vision_utils

from lingshu_jax.model.vision_inputs import (
    build_vision_stream,
    max_frame_rows,
    pad_vision_stream,
    stream_rows,
    vision_token_index,
)

GRIDS = [[1, 8, 12], [1, 16, 16], [1, 2, 2], [2, 10, 6], [1, 30, 4], [3, 8, 8]]


@pytest.mark.parametrize("grid", GRIDS)
def test_window_order_and_rotary_ids_match_transformers(grid):
    g = torch.tensor([grid])
    win, cu = vision_utils.get_vision_window_index(g, spatial_merge_size=2, window_size=112, patch_size=14)
    pos = vision_utils.get_vision_position_ids(g, 2).numpy()
    n = int(np.prod(grid))
    pix = np.arange(n, dtype=np.float32)[:, None].repeat(3, 1)  # row i holds value i
    s = build_vision_stream(pix, [grid], spatial_merge_size=2, window_merge_units=4)
    rows = (win.numpy()[:, None] * 4 + np.arange(4)).reshape(-1)
    real = (np.sort(s.unit_position)[:, None] * 4 + np.arange(4)).reshape(-1)  # stream rows of real patches
    np.testing.assert_array_equal(s.pixel_values[real, 0], rows)
    np.testing.assert_array_equal(s.vision_pos[real], pos[rows])
    # window segments of the real rows change exactly at transformers' cu_window_seqlens
    boundaries = np.flatnonzero(np.diff(s.window_segments[real])) + 1
    np.testing.assert_array_equal(boundaries, cu.numpy()[1:-1])
    # frame segments: one per temporal patch
    assert len(np.unique(s.frame_segments[real])) == grid[0]
    np.testing.assert_array_equal(np.argsort(np.argsort(s.unit_position)), np.argsort(win.numpy()))


@pytest.mark.parametrize("grid", GRIDS)
def test_windows_are_whole_blocks_of_64_rows_padding_in_own_segments(grid):
    n = int(np.prod(grid))
    s = build_vision_stream(np.ones((n, 3), np.float32), [grid], spatial_merge_size=2, window_merge_units=4)
    assert len(s.pixel_values) == stream_rows([grid], spatial_merge_size=2, window_merge_units=4)
    assert len(s.pixel_values) % 64 == 0
    real = np.zeros(len(s.pixel_values), bool)
    real[(s.unit_position[:, None] * 4 + np.arange(4)).reshape(-1)] = True
    assert real.sum() == n and (s.pixel_values[~real] == 0).all()
    blocks = s.window_segments.reshape(-1, 64)
    for block, is_real in zip(blocks, real.reshape(-1, 64)):
        assert len(np.unique(block[is_real])) == 1  # one window per block
        assert len(np.unique(block[~is_real])) == (~is_real).sum()  # each padding row its own segment
        assert not np.isin(block[~is_real], s.window_segments[real]).any()
    assert not np.isin(s.frame_segments[~real], s.frame_segments[real]).any()


def test_each_padding_row_is_a_segment_of_its_own():
    s = build_vision_stream(
        np.zeros((64, 1176), np.float32), [[1, 8, 8]], spatial_merge_size=2, window_merge_units=4
    )
    p = pad_vision_stream(s, 80)
    assert p.pixel_values.shape == (80, 1176)
    for seg in (p.window_segments, p.frame_segments):
        np.testing.assert_array_equal(seg[64:], seg[:64].max() + 1 + np.arange(16))
    with pytest.raises(ValueError, match="budget 32 is smaller"):
        pad_vision_stream(s, 32)


def test_grid_disagreeing_with_pixel_rows_is_a_clear_error():
    with pytest.raises(ValueError, match=r"pixel_values has 60 patch rows but .*implies 64"):
        build_vision_stream(np.zeros((60, 1176)), [[1, 8, 8]], spatial_merge_size=2, window_merge_units=4)


def test_more_image_tokens_than_images_is_a_clear_error():
    ids = np.array([[5, 9, 9, 9, 9, 9, 6]])
    with pytest.raises(ValueError, match="5 image pad tokens but the images give 4"):
        vision_token_index(ids, np.arange(4), image_token_id=9, video_token_id=8, num_image_units=4)


def test_a_batch_without_images_gives_an_empty_stream():
    s = build_vision_stream(
        np.zeros((0, 1176), np.float32),
        np.zeros((0, 3)),
        spatial_merge_size=2,
        window_merge_units=4,
        patch_budget=8,
    )
    assert s.pixel_values.shape == (8, 1176) and s.num_real_patches == 0


def test_max_frame_rows_is_the_largest_stream_of_any_allowed_grid():
    max_pixels = 200_704  # 256 merge units of 28 x 28 pixels
    grids = [
        [1, 2 * h, 2 * w]
        for h in range(1, 257)
        for w in range(1, 257)
        if h * w <= 256 and max(h, w) <= 200 * min(h, w)
    ]
    rows = [stream_rows([g], spatial_merge_size=2, window_merge_units=4) for g in grids]
    assert max_frame_rows(max_pixels) == max(rows) == 3200  # 1 x 200 merge units: 50 windows
    assert max_frame_rows(1_003_520) == 8192  # Qwen2.5-VL's class default max_pixels (square: 5120)
