"""processing.resize: the compiled bicubic resize is Pillow's, bit for bit."""

import warnings

import numpy as np
import pytest
from PIL import Image

from lingshu_jax.processing import resize


def pillow(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.asarray(
        Image.fromarray(np.ascontiguousarray(rgb[..., :3])).resize((width, height), Image.BICUBIC)
    )


def random_rgb(rng, height, width, channels=3):
    return rng.integers(0, 256, (height, width, channels), dtype=np.uint8)


def test_resize_bicubic_equals_pillow_bit_for_bit_over_random_sizes():
    rng = np.random.default_rng(0)
    sizes = [tuple(int(v) for v in rng.integers(1, 90, 4)) for _ in range(150)]
    sizes += [(224, 224, 336, 336), (448, 512, 448, 504), (600, 400, 280, 196), (30, 700, 60, 84)]
    for h, w, oh, ow in sizes:
        rgb = random_rgb(rng, h, w)
        np.testing.assert_array_equal(
            resize.resize_bicubic(rgb, oh, ow), pillow(rgb, oh, ow), err_msg=f"{(h, w, oh, ow)}"
        )


def test_both_pass_orders_and_the_boundary_between_them_match_pillow():
    """The intermediate image is 8-bit, so the pass order shows; Pillow 13 goes vertically first when
    the height shrinks by more than twice the pixels the width does (strictly)."""
    rng = np.random.default_rng(1)
    shapes = [
        (100, 37, 56, 84),  # height shrinks, width grows: vertical first
        (100, 100, 60, 80),  # 40 > 2 * 20 is false at equality: horizontal first
        (100, 100, 59, 80),  # 41 > 40: vertical first
        (100, 100, 61, 80),  # 39 < 40
        (80, 120, 40, 60),  # shrinks in both, the width by more
        (120, 80, 20, 70),  # shrinks in both, the height by far more
        (37, 100, 84, 56),  # height grows
    ]
    order = resize.pillow_pass_order()
    assert order is not None
    vertical_first = [resize.vertical_first(order, *s) for s in shapes]
    if order == resize.VERTICAL_FIRST_WHEN_HEIGHT_SHRINKS_MORE:
        assert vertical_first == [True, False, True, False, False, True, False]
    for shape in shapes:
        rgb = random_rgb(rng, *shape[:2])
        np.testing.assert_array_equal(
            resize.resize_bicubic(rgb, *shape[2:]), pillow(rgb, *shape[2:]), err_msg=f"{shape}"
        )


def test_four_byte_strided_and_batched_inputs_give_each_images_pillow_resize():
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (5, 48, 60, 4), dtype=np.uint8)  # four-byte pixels (Pillow's storage)
    out = resize.resize_bicubic(frames, 70, 33)
    assert out.shape == (5, 70, 33, 3)
    for frame, got in zip(frames, out, strict=True):
        want = pillow(frame, 70, 33)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(resize.resize_bicubic(frame[:, :, :3], 70, 33), want)  # strided view
        np.testing.assert_array_equal(resize.resize_bicubic(frame[::-1, :, :3][::-1], 70, 33), want)
    same = resize.resize_bicubic(frames[0, :, :, :3], 48, 60)
    np.testing.assert_array_equal(same, frames[0, :, :, :3])  # nothing to resize: the pixels as they are


def test_bad_input_is_refused_with_its_dtype_and_shape():
    with pytest.raises(ValueError, match=r"float32 \(4, 4, 3\)"):
        resize.resize_bicubic(np.zeros((4, 4, 3), np.float32), 8, 8)
    with pytest.raises(ValueError, match=r"uint8 \(4, 4, 2\)"):
        resize.resize_bicubic(np.zeros((4, 4, 2), np.uint8), 8, 8)
    with pytest.raises(ValueError, match="cannot resize to 0 x 8"):
        resize.resize_bicubic(np.zeros((4, 4, 3), np.uint8), 0, 8)


def test_a_kernel_that_does_not_reproduce_pillow_is_not_used(monkeypatch):
    """pillow_pass_order checks the kernel against the installed Pillow; where it differs (here: made to
    differ), resize_bicubic warns once and resizes with Pillow."""
    real = resize._resize
    monkeypatch.setattr(resize, "_resize", lambda images, h, w, order: real(images, h, w, order) ^ 1)
    resize.pillow_pass_order.cache_clear()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert resize.pillow_pass_order() is None
        assert any("does not reproduce Pillow" in str(w.message) for w in caught)
        rgb = random_rgb(np.random.default_rng(3), 20, 30)
        np.testing.assert_array_equal(resize.resize_bicubic(rgb, 45, 17), pillow(rgb, 45, 17))
    finally:
        resize.pillow_pass_order.cache_clear()


def test_a_process_moves_to_the_kernel_after_resizing_enough_pixels_with_pillow(monkeypatch):
    monkeypatch.setattr(resize, "KERNEL_AFTER_PIXELS", 1000)
    monkeypatch.setattr(resize, "_pillow_pixels", 0)
    assert [resize.prefer_kernel(400) for _ in range(4)] == [False, False, False, True]
    assert resize.prefer_kernel(10**9)


@pytest.mark.parametrize("kernel", [False, True])
def test_image_and_video_rows_are_the_same_with_pillow_and_with_the_kernel(monkeypatch, kernel):
    from lingshu_jax.processing.image import ImageProcessor, VideoProcessor

    rng = np.random.default_rng(4)
    images = [Image.fromarray(random_rgb(rng, 61, 97)), random_rgb(rng, 300, 140)]  # PIL and array inputs
    frames = [random_rgb(rng, 50, 70) for _ in range(3)]
    kw = dict(min_pixels=56 * 56, max_pixels=140 * 140)
    monkeypatch.setattr(resize, "_pillow_pixels", 0)
    monkeypatch.setattr(resize, "KERNEL_AFTER_PIXELS", 0 if kernel else 10**12)
    got = ImageProcessor(**kw)(images), VideoProcessor(**kw)([frames])
    assert resize.prefer_kernel(0) == kernel  # (which one made `got`)
    monkeypatch.setattr(resize, "KERNEL_AFTER_PIXELS", 10**12)  # Pillow throughout
    want = ImageProcessor(**kw)(images), VideoProcessor(**kw)([frames])
    for a, b in zip(got, want, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
