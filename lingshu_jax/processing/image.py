"""Qwen2.5-VL image and video preprocessing in numpy/PIL (no torch), bit-compatible with transformers.

Images follow transformers 5.x `Qwen2VLImageProcessorPil` step by step: convert to RGB (alpha composited
onto white), `smart_resize` to multiples of patch*merge (28) within [min_pixels, max_pixels], PIL's
bicubic resize of the uint8 image (bit for bit, by the compiled kernel of `processing.resize`), rescale
by 1/255 (float64, then float32), CLIP mean/std normalisation in float32, then patch flattening. Each
image is one temporal patch whose two frames are the same picture.

Rescale + normalise act on each uint8 value on its own and patch flattening only moves values, so we
flatten the uint8 image first and then look every value up in a [3, 256] float32 table holding
transformers' result for each (channel, value) (`PixelNormalization.channel_table`): bit-identical to
transformers' float output, with no float64 pass over the pixels. `ImageProcessor(output="uint8")` stops
before the lookup: uint8 rows [N, 1176] in the same layout (a quarter of the bytes), normalised later,
on the device, with `PixelNormalization.column_scale_and_offset` (the model's `pixel_scale`/`pixel_offset`).

Pixel rows (`pixel_values` [sum t*h*w, 3*2*14*14]) are ordered temporal patch, merged row, merged column,
then the 2x2 positions inside a merge unit (row-major); each row is ordered channel, frame, y, x.

Videos (lists of frames) follow transformers' `Qwen2VLVideoProcessor` (torchvision-only in transformers,
so not importable here): frames share one `smart_resize` size, the frame count is padded to a multiple of
temporal_patch_size by repeating the last frame, and rescale+normalise is fused as
(x - 255*mean) / (255*std) in float32. Deviation: each frame is resized as PIL's bicubic does (as the image
path and transformers < 4.52's video path did) where transformers 5.x uses torchvision's antialiased
bicubic; resized pixels differ by at most about one uint8 level (measured against torch's antialiased
bicubic interpolation).
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image

from lingshu_jax.processing.resize import prefer_kernel, resize_bicubic

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
MAX_ASPECT_RATIO = 200
OUTPUTS = ("float", "uint8")
PIXEL_AFFINE_KEYS = ("pixel_scale", "pixel_offset")  # model-batch arrays that go with uint8 pixel_values


@dataclass(frozen=True)
class PixelNormalization:
    """The processor's per-channel affine map of a uint8 value x: (x * rescale_factor - mean[c]) / std[c].

    The one home of these constants for both places that apply them: the host float path
    (`channel_table`) and the device, which normalises uint8 pixel rows with `column_scale_and_offset`
    (fed to the model as the batch arrays of `batch_arrays`).
    """

    rescale_factor: float = 1 / 255
    mean: tuple = OPENAI_CLIP_MEAN
    std: tuple = OPENAI_CLIP_STD

    def __post_init__(self):
        for name in ("mean", "std"):  # tuples of floats: hashable (the channel table is cached per value)
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean {self.mean} and std {self.std} differ in length")

    def channel_table(self) -> np.ndarray:
        """float32 [C, 256]: the normalised value of every uint8 value in every channel, computed exactly as
        transformers does (rescale in float64 then float32; mean/std in float32). Read-only, cached."""
        return _channel_table(self)

    def column_scale_and_offset(self, patch_dim: int) -> tuple[np.ndarray, np.ndarray]:
        """float32 (scale [patch_dim], offset [patch_dim]): value = x * scale + offset for a patch row x.

        Rows are ordered (channel, frame, y, x), so column j holds channel j // (patch_dim // C). The affine
        is folded from the constants once (scale = rescale / std, offset = -mean / std); in float32 it is
        within a few ulps of the host float path (5e-7 absolute with the CLIP constants).
        """
        channels = len(self.mean)
        if patch_dim % channels:
            raise ValueError(f"patch_dim {patch_dim} is not a multiple of the {channels} channels")
        scale = [self.rescale_factor / s for s in self.std]
        offset = [-m / s for m, s in zip(self.mean, self.std)]
        per_channel = patch_dim // channels
        return (
            np.repeat(np.asarray(scale, np.float32), per_channel),
            np.repeat(np.asarray(offset, np.float32), per_channel),
        )

    def batch_arrays(self, patch_dim: int) -> dict[str, np.ndarray]:
        """The model-batch entries that go with uint8 pixel_values: pixel_scale, pixel_offset [patch_dim]."""
        return dict(zip(PIXEL_AFFINE_KEYS, self.column_scale_and_offset(patch_dim)))


@functools.lru_cache(maxsize=16)
def _channel_table(norm: PixelNormalization) -> np.ndarray:
    values = (np.arange(256, dtype=np.float64) * norm.rescale_factor).astype(np.float32)  # 256 values only
    mean = np.asarray(norm.mean, np.float32)[:, None]
    std = np.asarray(norm.std, np.float32)[:, None]
    table = (values[None] - mean) / std
    table.flags.writeable = False
    return table


def smart_resize(
    height: int, width: int, factor: int = 28, min_pixels: int = 56 * 56, max_pixels: int = 14 * 14 * 4 * 1280
) -> tuple[int, int]:
    """Target (height, width): multiples of `factor`, area within [min_pixels, max_pixels], aspect kept.

    Identical to transformers' `smart_resize` (Python `round`, i.e. half to even; errors above 200:1).
    """
    if min(height, width) <= 0:
        raise ValueError(f"image has no pixels: height={height}, width={width}")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(
            f"absolute aspect ratio must be smaller than {MAX_ASPECT_RATIO}, "
            f"got {max(height, width) / min(height, width)}"
        )
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def to_rgb_array(image) -> np.ndarray:
    """PIL image or uint8 array ([H,W], [H,W,C] or [C,H,W], C in 1/3/4) -> uint8 [H, W, 3] (may be read-only).

    Transparency is composited onto white, as transformers' `convert_to_rgb` does.
    """
    if isinstance(image, Image.Image):
        if image.width == 0 or image.height == 0:
            raise ValueError(f"image has no pixels: size={image.size}")
        if "A" in image.getbands() or image.info.get("transparency") is not None:
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return np.array(Image.alpha_composite(background, rgba).convert("RGB"))
        if image.mode == "RGB":
            return np.asarray(image)  # read-only, one copy (convert("RGB") would copy first)
        return np.array(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(
            f"array images must be uint8 (got {arr.dtype}); convert floats to uint8 or PIL first"
        )
    if arr.ndim == 2:
        arr = arr[:, :, None]
    elif arr.ndim == 3 and arr.shape[0] in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # channels first; transformers also assumes first when ambiguous
    elif arr.ndim != 3:
        raise ValueError(f"expected an image array [H,W], [H,W,C] or [C,H,W], got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"image has no pixels: shape={arr.shape}")
    channels = arr.shape[-1]
    if channels == 1:
        return np.repeat(arr, 3, axis=-1)
    if channels == 4:
        alpha = arr[..., 3:4] / 255
        return np.round(alpha * arr[..., :3] + (1 - alpha) * 255).astype(np.uint8)
    if channels != 3:
        raise ValueError(f"cannot infer the channel axis of an image of shape {arr.shape}")
    return arr


def resize_rgb(rgb, height: int, width: int, resample: int = Image.BICUBIC) -> np.ndarray:
    """uint8 [H, W, 3] array or plain RGB PIL image -> uint8 [height, width, 3], as PIL resizes it
    (transformers' PIL backend). Bicubic resizes use the compiled kernel that gives PIL's pixels
    (`processing.resize`) once this process has resized enough to earn its start-up back
    (`resize.prefer_kernel`), Pillow before that and for other filters."""
    if resample == Image.BICUBIC and prefer_kernel(height * width):
        pixels = pixels_view(rgb) if isinstance(rgb, Image.Image) else rgb
        return resize_bicubic(np.asarray(rgb) if pixels is None else pixels, height, width)
    image = rgb if isinstance(rgb, Image.Image) else Image.fromarray(rgb)
    return rgb_view(image.resize((width, height), resample=resample))


def is_plain_rgb(image) -> bool:
    """A PIL RGB image with pixels and no transparency: to_rgb_array would only copy it."""
    return (
        isinstance(image, Image.Image)
        and image.mode == "RGB"
        and image.width > 0
        and image.height > 0
        and image.info.get("transparency") is None
    )


def rgb_view(image: Image.Image) -> np.ndarray:
    """A plain RGB PIL image's pixels as uint8 [H, W, 3], read-only, without copying them where Pillow can
    export its storage (`pixels_view`); otherwise `np.asarray` (one copy). Values are the same either way."""
    pixels = pixels_view(image)
    return np.asarray(image) if pixels is None else pixels[:, :, :3]


def pixels_view(image: Image.Image) -> np.ndarray | None:
    """An RGB PIL image's storage as uint8 [H, W, 4] (four bytes a pixel, the last one padding), read-only
    and not copied, through Pillow's Arrow export (Pillow >= 11.2; the array keeps the image's memory
    alive); None where Pillow cannot export it (rows in several blocks, as for large images)."""
    if image.mode != "RGB" or not hasattr(image, "__arrow_c_array__"):
        return None
    import pyarrow  # a dependency (Parquet sources); imported on first use

    try:
        flat = pyarrow.array(image).flatten().to_numpy(zero_copy_only=True)
    except (ValueError, TypeError, pyarrow.ArrowException):
        return None
    if flat.size != image.height * image.width * 4:
        return None
    return flat.reshape(image.height, image.width, 4)


def rgb_resized(image, size, resample: int = Image.BICUBIC) -> np.ndarray:
    """to_rgb_array(image) at [height, width] = size(its height, its width) (resized as PIL resizes it
    when it differs): the same values, but a plain RGB PIL image is read without a copy, straight from
    Pillow's storage (`pixels_view`, `rgb_view`)."""
    if is_plain_rgb(image):
        height, width = size(image.height, image.width)
        if image.size == (width, height):
            return rgb_view(image)
        return resize_rgb(image, height, width, resample)
    rgb = to_rgb_array(image)
    height, width = size(*rgb.shape[:2])
    return rgb if rgb.shape[:2] == (height, width) else resize_rgb(rgb, height, width, resample)


def normalize_rows(rows: np.ndarray, table: np.ndarray) -> np.ndarray:
    """uint8 patch rows [N, C * k] (channel-major columns) -> float32 [N, C * k] through table [C, 256]."""
    out = np.empty(rows.shape, np.float32)
    k = rows.shape[1] // len(table)
    for c, values in enumerate(table):
        np.take(values, rows[:, c * k : (c + 1) * k], out=out[:, c * k : (c + 1) * k])
    return out


def normalize_video_rows(rows: np.ndarray, mean, std, rescale_factor: float = 1 / 255) -> np.ndarray:
    """uint8 patch rows [N, C * k] (channel-major columns) -> float32: the video processor's fused
    (x - mean/r) / (std/r) in float32, value by value (the same arithmetic as on its [T, C, H, W] frames)."""
    per_channel = rows.shape[1] // len(mean)
    mean = np.repeat(np.asarray(mean, dtype=np.float32) * np.float32(1.0 / rescale_factor), per_channel)
    std = np.repeat(np.asarray(std, dtype=np.float32) * np.float32(1.0 / rescale_factor), per_channel)
    return (rows.astype(np.float32) - mean) / std


def patchify(
    frames: np.ndarray, patch_size: int = 14, merge_size: int = 2, temporal_patch_size: int = 2
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """[T, C, H, W] -> (rows [t*h*w, C*tp*p*p] of the same dtype, (t, h, w)) in transformers' row order.

    T is padded to a multiple of temporal_patch_size by repeating the last frame; H, W must be
    multiples of patch_size * merge_size.
    """
    if pad := -frames.shape[0] % temporal_patch_size:
        frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)], axis=0)
    n, c, height, width = frames.shape
    gt, gh, gw = n // temporal_patch_size, height // patch_size, width // patch_size
    if gh % merge_size or gw % merge_size or height % patch_size or width % patch_size:
        raise ValueError(
            f"frame size {height}x{width} is not a multiple of patch*merge={patch_size * merge_size}"
        )
    x = frames.reshape(
        gt,
        temporal_patch_size,
        c,
        gh // merge_size,
        merge_size,
        patch_size,
        gw // merge_size,
        merge_size,
        patch_size,
    )
    # (gt, gh/m, gw/m, m, m, C, tp, p, p)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    rows = x.reshape(gt * gh * gw, c * temporal_patch_size * patch_size * patch_size)
    return np.ascontiguousarray(rows), (gt, gh, gw)


def patchify_frames(
    frames: Sequence[np.ndarray], patch_size: int = 14, merge_size: int = 2, temporal_patch_size: int = 2
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Frames [H, W, C] (any strides, e.g. `rgb_view`s) -> (rows [t*h*w, C*tp*p*p], (t, h, w)): the rows
    of `patchify` on the stacked channel-first frames, each frame copied once, straight into its place.

    The frame count is padded to a multiple of temporal_patch_size by repeating the last frame.
    """
    frames = list(frames)
    frames += frames[-1:] * (-len(frames) % temporal_patch_size)
    height, width, c = frames[0].shape
    gh, gw, m, p, tp = height // patch_size, width // patch_size, merge_size, patch_size, temporal_patch_size
    if gh % m or gw % m or height % p or width % p:
        raise ValueError(f"frame size {height}x{width} is not a multiple of patch*merge={p * m}")
    gt = len(frames) // tp
    rows = np.empty((gt, gh // m, gw // m, m, m, c, tp, p, p), frames[0].dtype)
    for i, frame in enumerate(frames):
        # [H, W, C] -> (gh/m, gw/m, m, m, C, p, p)
        src = frame.reshape(gh // m, m, p, gw // m, m, p, c).transpose(0, 3, 1, 4, 6, 2, 5)
        np.copyto(rows[i // tp, :, :, :, :, :, i % tp], src)
    return rows.reshape(gt * gh * gw, c * tp * p * p), (gt, gh, gw)


def patchify_image(
    rgb: np.ndarray, patch_size: int = 14, merge_size: int = 2, temporal_patch_size: int = 2
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """One picture [H, W, C] as a temporal patch of identical frames -> (rows [h*w, C*tp*p*p], (1, h, w)).

    Same rows as `patchify` on the picture repeated temporal_patch_size times, but flattened once and
    then duplicated (about half the cost); dtype kept.
    """
    rows, grid = patchify(np.moveaxis(rgb, -1, 0)[None], patch_size, merge_size, temporal_patch_size=1)
    n, c = rows.shape[0], rgb.shape[-1]
    frames = np.broadcast_to(rows.reshape(n, c, 1, -1), (n, c, temporal_patch_size, rows.shape[1] // c))
    return frames.reshape(n, -1), grid


def _size_from_config(cfg: dict, default_min: int, default_max: int) -> tuple[int, int]:
    """(min_pixels, max_pixels) from a preprocessor config: explicit keys win over `size`."""
    size = cfg.get("size") or {}
    min_pixels = cfg.get("min_pixels") or size.get("shortest_edge") or size.get("min_pixels") or default_min
    max_pixels = cfg.get("max_pixels") or size.get("longest_edge") or size.get("max_pixels") or default_max
    return int(min_pixels), int(max_pixels)


def _read_config(model_dir: str, key: str, names: Sequence[str]) -> dict:
    """First of processor_config.json[key] (nested, transformers 5 layout) or the named json files."""
    nested = os.path.join(model_dir, "processor_config.json")
    if os.path.isfile(nested):
        with open(nested, encoding="utf-8") as f:
            data = json.load(f)
        if isinstance(data.get(key), dict):
            return data[key]
    for name in names:
        path = os.path.join(model_dir, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                try:
                    return json.load(f)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}: invalid JSON ({e})") from e
    return {}


@dataclass(frozen=True)
class ImageProcessor:
    """Qwen2-VL image processor; `__call__(images)` -> pixel_values [N, 1176], image_grid_thw [n, 3] i64.

    output="float": pixel_values float32, normalised (transformers' output, bit for bit).
    output="uint8": pixel_values uint8, the resized image's values in the same layout; `normalization`
    maps them to the float output (the model does so on the device).
    """

    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 1280
    patch_size: int = 14
    temporal_patch_size: int = 2
    merge_size: int = 2
    image_mean: tuple = OPENAI_CLIP_MEAN
    image_std: tuple = OPENAI_CLIP_STD
    rescale_factor: float = 1 / 255
    resample: int = Image.BICUBIC
    do_resize: bool = True
    do_rescale: bool = True
    do_normalize: bool = True
    config_names: tuple = field(default=("preprocessor_config.json",), repr=False)
    config_key: str = field(default="image_processor", repr=False)
    output: str = "float"

    def __post_init__(self):
        if self.output not in OUTPUTS:
            raise ValueError(f"output={self.output!r}: expected one of {OUTPUTS}")

    @classmethod
    def from_config(cls, cfg: dict) -> ImageProcessor:
        """From a preprocessor_config.json dict (min/max_pixels or size {shortest_edge, longest_edge})."""
        base = cls()
        min_pixels, max_pixels = _size_from_config(cfg, base.min_pixels, base.max_pixels)
        updates = {
            k: cfg[k]
            for k in (
                "patch_size",
                "temporal_patch_size",
                "merge_size",
                "rescale_factor",
                "resample",
                "do_resize",
                "do_rescale",
                "do_normalize",
            )
            if k in cfg
        }
        for k in ("image_mean", "image_std"):
            if cfg.get(k) is not None:
                updates[k] = tuple(float(v) for v in cfg[k])
        return replace(base, min_pixels=min_pixels, max_pixels=max_pixels, **updates)

    @classmethod
    def from_pretrained(cls, model_dir: str) -> ImageProcessor:
        base = cls()
        return cls.from_config(_read_config(model_dir, base.config_key, base.config_names))

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """Resized (height, width) of an input of this size."""
        if not self.do_resize:
            return height, width
        return smart_resize(height, width, self.factor, self.min_pixels, self.max_pixels)

    def num_image_tokens(self, height: int, width: int) -> int:
        """LLM tokens (merged patches) of one image of this size."""
        h, w = self.target_size(height, width)
        return (h // self.patch_size) * (w // self.patch_size) // self.merge_size**2

    @property
    def normalization(self) -> PixelNormalization:
        """uint8 value -> float output as configured (do_rescale off: factor 1; do_normalize off: 0, 1)."""
        channels = len(self.image_mean)
        return PixelNormalization(
            rescale_factor=self.rescale_factor if self.do_rescale else 1.0,
            mean=tuple(self.image_mean) if self.do_normalize else (0.0,) * channels,
            std=tuple(self.image_std) if self.do_normalize else (1.0,) * channels,
        )

    def _finish(self, rows: np.ndarray) -> np.ndarray:
        """uint8 rows -> this processor's output rows (normalised float32 unless output="uint8")."""
        if self.output == "uint8":
            return rows
        return normalize_rows(rows, self.normalization.channel_table())

    def process_one(self, image) -> tuple[np.ndarray, tuple[int, int, int]]:
        """One image -> (rows [h*w, 1176] float32 (uint8 if output="uint8"), (1, h, w))."""
        rgb = rgb_resized(image, self.target_size, self.resample)
        rows, grid = patchify_image(rgb, self.patch_size, self.merge_size, self.temporal_patch_size)
        return self._finish(rows), grid

    def __call__(self, images) -> dict:
        """images: one image or a list -> dict(pixel_values [N, 1176] f32/u8, image_grid_thw [n, 3] i64)."""
        if isinstance(images, (Image.Image, np.ndarray)):
            images = [images]
        if len(images) == 0:
            raise ValueError("no images given")
        rows, grids = zip(*(self.process_one(im) for im in images))
        return {
            "pixel_values": rows[0] if len(rows) == 1 else np.concatenate(rows, axis=0),
            "image_grid_thw": np.asarray(grids, dtype=np.int64).reshape(-1, 3),
        }


@dataclass(frozen=True)
class VideoProcessor(ImageProcessor):
    """Qwen2-VL video processor; `__call__(videos)` -> pixel_values_videos, video_grid_thw, second_per_grid_ts.

    A video is a list of frames (PIL or uint8 arrays) or a uint8 array [T, H, W, C]. Defaults are
    transformers' video defaults; from_pretrained reads video_preprocessor_config.json, then
    preprocessor_config.json, as transformers does.
    """

    min_pixels: int = 128 * 28 * 28
    max_pixels: int = 28 * 28 * 768
    default_fps: float = 24.0  # transformers' `sampled_fps` when a video comes without metadata
    config_names: tuple = field(
        default=("video_preprocessor_config.json", "preprocessor_config.json"), repr=False
    )
    config_key: str = field(default="video_processor", repr=False)

    def process_one(self, video) -> tuple[np.ndarray, tuple[int, int, int]]:
        """One video -> (rows [t*h*w, 1176] float32 (uint8 if output="uint8"), (t, h, w))."""
        frames = list(video) if not isinstance(video, np.ndarray) else video
        if not len(frames):
            raise ValueError("video has no frames")
        if not all(is_plain_rgb(f) for f in frames):  # PIL RGB frames are resized as they are
            frames = [to_rgb_array(f) for f in frames]
        shapes = [(f.height, f.width, 3) if isinstance(f, Image.Image) else f.shape for f in frames]
        if any(shape != shapes[0] for shape in shapes):
            raise ValueError(f"video frames differ in size: {sorted(set(shapes))}")
        height, width = self.target_size(*shapes[0][:2])
        target = lambda h, w: (height, width)  # noqa: E731  (every frame to the first frame's target)
        frames = [rgb_resized(f, target, self.resample) for f in frames]  # each [H, W, 3] uint8
        rows, grid = patchify_frames(frames, self.patch_size, self.merge_size, self.temporal_patch_size)
        rescale = self.rescale_factor if self.do_rescale else 1.0
        if self.output == "uint8":
            return rows, grid
        if self.do_normalize:
            return normalize_video_rows(rows, self.image_mean, self.image_std, rescale), grid
        return rows.astype(np.float32) * np.float32(rescale), grid

    def __call__(self, videos, fps=None) -> dict:
        """videos: list of videos (or one [T,H,W,C] array); fps: per-video sampled fps (default 24)."""
        if isinstance(videos, np.ndarray) and videos.ndim == 4:
            videos = [videos]
        elif len(videos) and (isinstance(videos[0], Image.Image) or getattr(videos[0], "ndim", 0) == 3):
            videos = [videos]  # a single video given as its list of frames
        if len(videos) == 0:
            raise ValueError("no videos given")
        rows, grids = zip(*(self.process_one(v) for v in videos))
        fps = [self.default_fps] * len(videos) if fps is None else list(np.broadcast_to(fps, (len(videos),)))
        return {
            "pixel_values_videos": np.concatenate(rows, axis=0),
            "video_grid_thw": np.asarray(grids, dtype=np.int64).reshape(-1, 3),
            "second_per_grid_ts": np.asarray([self.temporal_patch_size / f for f in fps], dtype=np.float64),
        }


def check_grid(
    pixel_values: np.ndarray,
    grid_thw: np.ndarray,
    patch_dim: int | None = None,
    merge_size: int = 2,
    what: str = "image",
) -> None:
    """ValueError unless pixel rows agree with grid_thw (sum t*h*w rows; h, w multiples of merge_size)."""
    grid_thw = np.asarray(grid_thw)
    if grid_thw.ndim != 2 or grid_thw.shape[1] != 3:
        raise ValueError(f"{what}_grid_thw must have shape [n, 3], got {grid_thw.shape}")
    if (grid_thw <= 0).any() or (grid_thw[:, 1:] % merge_size).any():
        raise ValueError(
            f"{what}_grid_thw has a non-positive size or h/w not divisible by {merge_size}: "
            f"{grid_thw.tolist()}"
        )
    rows = int(np.prod(grid_thw, axis=1).sum())
    if pixel_values.ndim != 2 or pixel_values.shape[0] != rows:
        raise ValueError(
            f"{what}_grid_thw {grid_thw.tolist()} needs {rows} pixel rows, "
            f"got pixel values of shape {pixel_values.shape}"
        )
    if patch_dim is not None and pixel_values.shape[1] != patch_dim:
        raise ValueError(f"{what} pixel rows must have {patch_dim} values, got {pixel_values.shape[1]}")
