"""Image/video preprocessing vs transformers' Qwen2VLImageProcessorPil (bit-level) and its video code."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from lingshu_jax.processing.image import (
    ImageProcessor,
    PixelNormalization,
    VideoProcessor,
    normalize_rows,
    patchify,
    patchify_frames,
    rgb_view,
    smart_resize,
)

from .helpers import rgb, transformers_video_code

hf_image = pytest.importorskip("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl")

# (height, width): extreme aspect ratios, tiny images, half-to-even rounding (42 = 1.5*28, 70 = 2.5*28).
SIZES = [
    (1, 1),
    (2, 2),
    (13, 13),
    (14, 14),
    (28, 28),
    (42, 70),
    (70, 98),
    (1, 150),
    (150, 1),
    (10, 1500),
    (28, 2000),
    (3000, 40),
    (56, 56),
    (224, 224),
    (333, 517),
    (517, 333),
    (1000, 1000),
    (99, 1001),
    (481, 640),
    (640, 481),
    (768, 1366),
    (2, 399),
]
# Checkpoint (Hub) values, transformers' class defaults, and a tight window where both edges bind.
CONFIGS = [
    {"min_pixels": 3136, "max_pixels": 12845056},
    {"min_pixels": 56 * 56, "max_pixels": 28 * 28 * 1280},
    {"min_pixels": 16 * 28 * 28, "max_pixels": 24 * 28 * 28},
]


def test_smart_resize_equals_transformers_including_half_to_even_and_edges():
    rs = np.random.RandomState(0)
    sizes = SIZES + [tuple(int(v) for v in rs.randint(1, 4000, 2)) for _ in range(300)]
    sizes += [(14 * k, 14 * j) for k in range(1, 12) for j in (1, 3, 5, 7)]  # exact .5 ratios to factor 28
    for h, w in sizes:
        if max(h, w) / min(h, w) > 200:
            continue
        for cfg in CONFIGS + [{"min_pixels": 28 * 28 * 4, "max_pixels": 28 * 28 * 4}]:
            assert smart_resize(h, w, 28, **cfg) == hf_image.smart_resize(h, w, 28, **cfg), (h, w, cfg)


def test_aspect_ratio_over_200_raises_as_transformers():
    for h, w in [(1, 201), (300, 1), (10, 2001)]:
        with pytest.raises(ValueError, match="aspect ratio"):
            hf_image.smart_resize(h, w)
        with pytest.raises(ValueError, match="aspect ratio"):
            smart_resize(h, w)
        with pytest.raises(ValueError, match="aspect ratio"):
            ImageProcessor()(rgb(h, w))


@pytest.mark.parametrize("cfg", CONFIGS, ids=["hub", "class_default", "tight"])
def test_pixel_values_equal_transformers_pil_processor_over_22_sizes(cfg):
    hf = hf_image.Qwen2VLImageProcessorPil(**cfg)
    ours = ImageProcessor(**cfg)
    worst = 0.0
    for i, (h, w) in enumerate(SIZES):
        image = rgb(h, w, seed=i)
        ref, out = hf(image), ours(image)
        np.testing.assert_array_equal(out["image_grid_thw"], ref["image_grid_thw"])
        assert out["pixel_values"].dtype == np.float32 and out["image_grid_thw"].dtype == np.int64
        assert out["pixel_values"].shape == ref["pixel_values"].shape
        worst = max(worst, float(np.abs(out["pixel_values"] - ref["pixel_values"]).max()))
    assert worst <= 1e-6, worst


def test_batch_of_images_concatenates_rows_in_order():
    images = [rgb(50, 70, 1), rgb(300, 120, 2), rgb(28, 28, 3)]
    ref = hf_image.Qwen2VLImageProcessorPil()(images)
    out = ImageProcessor()(images)
    np.testing.assert_array_equal(out["image_grid_thw"], ref["image_grid_thw"])
    np.testing.assert_allclose(out["pixel_values"], ref["pixel_values"], rtol=0, atol=1e-6)


def _odd_inputs():
    rs = np.random.RandomState(5)
    rgba = rs.randint(0, 256, (40, 60, 4), dtype=np.uint8)
    palette = Image.fromarray(rs.randint(0, 8, (40, 60), dtype=np.uint8), mode="L").convert("P")
    palette.info["transparency"] = 3
    return {
        "rgba_pil": Image.fromarray(rgba),
        "gray_pil": Image.fromarray(rgba[..., 0]),
        "palette_transparency": palette,
        "uint8_hwc": rgba[..., :3].copy(),
        "uint8_chw": np.ascontiguousarray(np.moveaxis(rgba[..., :3], -1, 0)),
        "uint8_rgba_array": rgba,
    }


@pytest.mark.parametrize("kind", list(_odd_inputs()))
def test_alpha_grayscale_palette_and_array_inputs_equal_transformers(kind):
    image = _odd_inputs()[kind]
    ref = hf_image.Qwen2VLImageProcessorPil()(image)
    out = ImageProcessor()(image)
    np.testing.assert_array_equal(out["image_grid_thw"], ref["image_grid_thw"])
    np.testing.assert_allclose(out["pixel_values"], ref["pixel_values"], rtol=0, atol=1e-6)


def test_row_layout_is_temporal_merged_row_merged_col_then_2x2_and_channel_frame_y_x():
    # Unnormalised 56x84 image whose pixel value encodes (channel, y, x): check rows by hand.
    h, w, p = 56, 84, 14
    c_idx, y_idx, x_idx = np.meshgrid(np.arange(3), np.arange(h), np.arange(w), indexing="ij")
    chw = (c_idx * 10000 + y_idx * 100 + x_idx).astype(np.float32)
    rows, grid = patchify(np.stack([chw, chw + 0.5]), p, 2, 2)  # two frames, the second offset by 0.5
    assert grid == (1, 4, 6)
    r = 0
    for mr in range(2):
        for mc in range(3):
            for ir in range(2):
                for ic in range(2):
                    y0, x0 = (2 * mr + ir) * p, (2 * mc + ic) * p
                    expect = np.stack(
                        [chw[:, y0 : y0 + p, x0 : x0 + p], chw[:, y0 : y0 + p, x0 : x0 + p] + 0.5], axis=1
                    )
                    np.testing.assert_array_equal(rows[r], expect.reshape(-1))  # [C, T, y, x]
                    r += 1


def test_from_pretrained_reads_min_max_pixels_or_size_dict(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps({"min_pixels": 3136, "max_pixels": 12845056})
    )
    assert (
        ImageProcessor.from_pretrained(str(tmp_path)).min_pixels,
        ImageProcessor.from_pretrained(str(tmp_path)).max_pixels,
    ) == (3136, 12845056)
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps({"size": {"shortest_edge": 1000, "longest_edge": 200000}, "merge_size": 2})
    )
    ip = ImageProcessor.from_pretrained(str(tmp_path))
    assert (ip.min_pixels, ip.max_pixels) == (1000, 200000)
    # No video config: the video processor falls back to preprocessor_config.json, as transformers does.
    assert VideoProcessor.from_pretrained(str(tmp_path)).max_pixels == 200000
    (tmp_path / "video_preprocessor_config.json").write_text(json.dumps({"max_pixels": 50000}))
    assert VideoProcessor.from_pretrained(str(tmp_path)).max_pixels == 50000


def test_zero_pixel_array_raises():
    with pytest.raises(ValueError, match="no pixels"):
        ImageProcessor()(np.zeros((0, 10, 3), np.uint8))


def test_video_defaults_equal_transformers_video_processor():
    _, defaults = transformers_video_code()
    vp = VideoProcessor()
    assert (vp.min_pixels, vp.max_pixels) == (
        defaults["size"]["shortest_edge"],
        defaults["size"]["longest_edge"],
    )
    assert (vp.patch_size, vp.temporal_patch_size, vp.merge_size) == (
        defaults["patch_size"],
        defaults["temporal_patch_size"],
        defaults["merge_size"],
    )


@pytest.mark.parametrize("num_frames", [1, 3, 4])
def test_video_rows_equal_transformers_patchify_with_last_frame_padding(num_frames):
    torch = pytest.importorskip("torch")
    hf_patchify, _ = transformers_video_code()
    frames = [rgb(60, 80, seed=i) for i in range(num_frames)]
    vp = VideoProcessor(min_pixels=56 * 56, max_pixels=8 * 28 * 28)
    out = vp([frames])
    # transformers' video path: resize every frame, fused rescale+normalise in float32, then patchify.
    h, w = smart_resize(60, 80, 28, vp.min_pixels, vp.max_pixels)
    x = np.stack([np.array(f.resize((w, h), Image.BICUBIC)) for f in frames]).astype(np.float32)
    mean = torch.tensor(vp.image_mean) * (1.0 / vp.rescale_factor)
    std = torch.tensor(vp.image_std) * (1.0 / vp.rescale_factor)
    video = (torch.from_numpy(x).permute(0, 3, 1, 2) - mean[:, None, None]) / std[:, None, None]
    ref, gt, gh, gw = hf_patchify(None, video[None], vp.patch_size, vp.merge_size, vp.temporal_patch_size)
    assert out["video_grid_thw"].tolist() == [[gt, gh, gw]] and gt == math.ceil(num_frames / 2)
    np.testing.assert_allclose(out["pixel_values_videos"], ref[0].numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(out["second_per_grid_ts"], [2 / 24])  # transformers' fps without metadata


@pytest.mark.parametrize("num_frames", [1, 2, 5])
def test_patchify_frames_from_strided_channel_last_frames_equals_patchify_of_the_stacked_video(num_frames):
    rng = np.random.default_rng(num_frames)
    # Frames as the processor gets them from PIL: [H, W, 3] views with a 4-byte pixel stride.
    frames = [rng.integers(0, 256, (56, 84, 4), dtype=np.uint8)[:, :, :3] for _ in range(num_frames)]
    rows, grid = patchify_frames(frames)
    stacked = np.moveaxis(np.stack(frames), -1, 1)  # [T, C, H, W]
    want, want_grid = patchify(stacked)
    assert grid == want_grid == (math.ceil(num_frames / 2), 4, 6)
    np.testing.assert_array_equal(rows, want)
    with pytest.raises(ValueError, match="multiple of patch"):
        patchify_frames([np.zeros((56, 70, 3), np.uint8)])


def test_rgb_view_reads_the_pixels_without_a_copy_and_keeps_them_alive():
    pixels = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    view = rgb_view(image)
    np.testing.assert_array_equal(view, pixels)
    assert view.shape == (37, 53, 3) and view.dtype == np.uint8 and not view.flags.writeable
    assert view.strides[1] == 4  # Pillow's own 4-byte pixels (its Arrow export), not a copy from tobytes()
    del image
    np.testing.assert_array_equal(view, pixels)  # the export holds the image's memory
    # An image stored in several blocks (Pillow splits those above its 16 MB block size) is copied.
    big = Image.new("RGB", (3000, 2000), (7, 8, 9))
    assert rgb_view(big).shape == (2000, 3000, 3) and (rgb_view(big)[-1, -1] == (7, 8, 9)).all()


def test_two_identical_frames_give_the_image_rows():
    image = rgb(90, 120, seed=3)
    img = ImageProcessor(min_pixels=3136, max_pixels=100000)(image)
    vid = VideoProcessor(min_pixels=3136, max_pixels=100000)([[image, image]])
    np.testing.assert_array_equal(img["image_grid_thw"], vid["video_grid_thw"])
    # Image path: (x/255 - m)/s; video path: (x - 255m)/(255s) -- equal up to float32 rounding.
    np.testing.assert_allclose(img["pixel_values"], vid["pixel_values_videos"], rtol=0, atol=2e-6)


def test_single_video_may_be_given_as_its_frame_list_or_array():
    frames = [rgb(40, 60, seed=i) for i in range(3)]
    nested = VideoProcessor()([frames])
    np.testing.assert_array_equal(
        VideoProcessor()(frames)["pixel_values_videos"], nested["pixel_values_videos"]
    )
    stacked = np.stack([np.array(f) for f in frames])
    np.testing.assert_array_equal(
        VideoProcessor()(stacked)["pixel_values_videos"], nested["pixel_values_videos"]
    )


# ------------------------------------------------------------------------------ uint8 output
def _affine(rows, norm: PixelNormalization):
    scale, offset = norm.column_scale_and_offset(rows.shape[1])
    return rows.astype(np.float32) * scale + offset


@pytest.mark.parametrize("kind", ["sizes", "odd_inputs"])
def test_uint8_rows_are_transformers_unnormalised_rows_and_the_affine_gives_its_float_rows(kind):
    cfg = CONFIGS[0]
    images = [rgb(h, w, seed=i) for i, (h, w) in enumerate(SIZES)] if kind == "sizes" else _odd_inputs()
    raw_hf = hf_image.Qwen2VLImageProcessorPil(do_rescale=False, do_normalize=False, **cfg)
    hf = hf_image.Qwen2VLImageProcessorPil(**cfg)
    ours = ImageProcessor(output="uint8", **cfg)
    for image in images.values() if isinstance(images, dict) else images:
        out = ours(image)
        assert out["pixel_values"].dtype == np.uint8
        np.testing.assert_array_equal(out["image_grid_thw"], hf(image)["image_grid_thw"])
        np.testing.assert_array_equal(out["pixel_values"], raw_hf(image)["pixel_values"])  # resize, layout
        want = hf(image)["pixel_values"]
        np.testing.assert_allclose(_affine(out["pixel_values"], ours.normalization), want, rtol=0, atol=1e-6)


def test_float_rows_are_the_channel_table_of_the_uint8_rows_bit_for_bit():
    from transformers.image_transforms import normalize, rescale

    norm = ImageProcessor().normalization
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, None], 3, axis=0)  # [3, 1, 256] channels first
    hf_values = normalize(rescale(ramp, norm.rescale_factor), norm.mean, norm.std)[:, 0]
    np.testing.assert_array_equal(norm.channel_table(), hf_values)
    image = rgb(333, 517, seed=4)
    rows = ImageProcessor(output="uint8")(image)["pixel_values"]
    floats = normalize_rows(rows, norm.channel_table())
    np.testing.assert_array_equal(floats, ImageProcessor()(image)["pixel_values"])


def test_column_scale_and_offset_follow_each_columns_channel():
    norm = PixelNormalization(rescale_factor=0.5, mean=(1.0, 2.0, 3.0), std=(2.0, 4.0, 8.0))
    scale, offset = norm.column_scale_and_offset(3 * 2 * 14 * 14)
    assert scale.dtype == offset.dtype == np.float32 and scale.shape == (1176,)
    channel = np.arange(1176) // 392  # rows are (channel, frame, y, x)
    np.testing.assert_array_equal(scale, np.array([0.25, 0.125, 0.0625], np.float32)[channel])
    np.testing.assert_array_equal(offset, np.array([-0.5, -0.5, -0.375], np.float32)[channel])
    assert set(norm.batch_arrays(1176)) == {"pixel_scale", "pixel_offset"}
    with pytest.raises(ValueError, match="multiple"):
        norm.column_scale_and_offset(1000)
    switched_off = ImageProcessor(do_rescale=False, do_normalize=False).normalization
    assert switched_off == PixelNormalization(1.0, (0.0,) * 3, (1.0,) * 3)


def test_uint8_video_rows_and_their_affine():
    frames = [rgb(60, 90, seed=i) for i in range(3)]
    out = VideoProcessor(output="uint8")(frames)
    raw = VideoProcessor(do_rescale=False, do_normalize=False)(frames)
    assert out["pixel_values_videos"].dtype == np.uint8
    np.testing.assert_array_equal(out["pixel_values_videos"], raw["pixel_values_videos"])
    want = VideoProcessor()(frames)["pixel_values_videos"]  # fused video formula: equal up to rounding
    got = _affine(out["pixel_values_videos"], VideoProcessor().normalization)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)


def test_unknown_output_is_refused():
    with pytest.raises(ValueError, match="output"):
        ImageProcessor(output="float16")
