"""Host-side shaping: shape buckets, right -> left padding, collation of single conversations."""

import numpy as np
import pytest

from lingshu_jax.infer import batching


def test_bucket_size_is_a_multiple_of_step_and_wastes_at_most_an_eighth_above_8_steps():
    assert [batching.bucket_size(n, 64) for n in (1, 64, 65, 500, 513)] == [64, 64, 128, 512, 576]
    for n in range(1, 20000, 37):
        b = batching.bucket_size(n, 64)
        assert b >= n and b % 64 == 0
        assert b - n < max(64, n / 8 + 1)
    assert len({batching.bucket_size(n, 256) for n in range(256, 65536)}) < 70  # few compiled shapes


def test_left_align_moves_right_padding_left_keeping_order():
    inputs = {
        "input_ids": np.array([[5, 6, 7, 0, 0], [1, 2, 3, 4, 9]]),
        "attention_mask": np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]),
    }
    out = batching.left_align(inputs)
    np.testing.assert_array_equal(out["input_ids"], [[0, 0, 5, 6, 7], [1, 2, 3, 4, 9]])
    np.testing.assert_array_equal(out["attention_mask"], [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])


def test_pad_inputs_left_pads_columns_and_appends_empty_rows():
    inputs = {"input_ids": np.array([[3, 4]]), "attention_mask": np.array([[1, 1]])}
    out = batching.pad_inputs(inputs, length=4, rows=2, pad_id=9)
    np.testing.assert_array_equal(out["input_ids"], [[9, 9, 3, 4], [9, 9, 9, 9]])
    np.testing.assert_array_equal(out["attention_mask"], [[0, 0, 1, 1], [0, 0, 0, 0]])
    with pytest.raises(ValueError, match="smaller than the batch"):
        batching.pad_inputs(inputs, length=1, rows=1, pad_id=9)


def test_collate_equals_the_processor_on_the_whole_batch(processor):
    from tests.infer.conftest import image, user

    convs = [
        [user(image(56, 56, 1), "Short?")],
        [user("no image here, longer text")],
        [user("two", image(70, 42, 2), image(28, 84, 3))],
    ]
    single = [processor(c) for c in convs]
    whole = processor(convs)
    got = batching.collate(single, processor.tokenizer.pad_token_id)
    for key in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw"):
        np.testing.assert_array_equal(got[key], whole[key], err_msg=key)


def test_to_numpy_requires_input_ids():
    with pytest.raises(ValueError, match="input_ids"):
        batching.to_numpy({"attention_mask": np.ones((1, 2))})
