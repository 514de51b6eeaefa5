"""Pillow's bicubic resize of uint8 images, bit for bit, with a compiled kernel.

Pillow resizes an 8-bit image in two separable passes (`libImaging/Resample.c`). For each output pixel
of a pass, the source pixels within the filter's support get bicubic weights (a = -0.5; the support
widened by the ratio when shrinking), normalised to sum 1 and rounded to 22 fractional bits; the pixel is
the rounded weighted sum, clipped to 0..255. The image between the passes is 8-bit too, so the order of
the passes shows in the result: Pillow 13 resizes vertically first when the height shrinks by more than
twice as many pixels as the width does, horizontally first otherwise; earlier Pillows always
horizontally first. Which one the installed Pillow does is found out once per process
(`pillow_pass_order`).

Pillow's passes are scalar C loops over four bytes a pixel: 2.2 ms to resize one 224 x 224 frame to
336 x 336 on our 2-core CI VM, the largest cost of a video sample in the data pipeline. Here a vertical
pass is a weighted sum of whole source lines (`resize_kernels.resample_lines`, compiled by numba, which
vectorises it), and the horizontal pass is the same on the transposed image.

`resize_bicubic` is what `processing.image` resizes with. Where the kernel does not reproduce the
installed Pillow (`pillow_pass_order()` is None) it calls Pillow instead, after one warning.

numba costs a process about 1 s before its first resize (importing it, loading the cached kernels,
checking them against Pillow; 3-4 s the first time, compiling them). So `processing.image` resizes with
Pillow until the process has resized `KERNEL_AFTER_PIXELS` output pixels, and with the kernel from then
on (`prefer_kernel`): a data worker switches within its first few hundred video frames, while a script
or a server that resizes a few images never loads numba. The pixels are the same either way.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
from PIL import Image

# Pass orders Pillow has had; `pillow_pass_order` names the installed one.
HORIZONTAL_FIRST = "horizontal first"
VERTICAL_FIRST_WHEN_HEIGHT_SHRINKS_MORE = (
    "vertical first when the height shrinks by over twice the width's pixels"
)


# Output pixels a process resizes with Pillow before it moves to the kernel: about 0.3 s of Pillow's time
# on our CI VM (224 x 224 -> 336 x 336 frames), a third of the kernel's start-up.
KERNEL_AFTER_PIXELS = 16_000_000
_pillow_pixels = 0  # output pixels this process has resized with Pillow so far (`prefer_kernel`)


def prefer_kernel(out_pixels: int) -> bool:
    """Whether to resize the next image (`out_pixels` output pixels) with `resize_bicubic`: once this
    process has resized KERNEL_AFTER_PIXELS with Pillow (which the caller does while this is False)."""
    global _pillow_pixels
    if _pillow_pixels >= KERNEL_AFTER_PIXELS:
        return True
    _pillow_pixels += out_pixels
    return False


def vertical_first(order: str, height: int, width: int, out_height: int, out_width: int) -> bool:
    """Whether Pillow with pass order `order` resizes [height, width] -> [out_height, out_width]
    vertically first."""
    if order == HORIZONTAL_FIRST:
        return False
    return out_height < height and height - out_height > 2 * (width - out_width)


def resize_bicubic(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 RGB images [..., H, W, C] (C = 3, or 4 with the fourth byte padding, as Pillow keeps RGB;
    any strides) -> uint8 [..., height, width, 3]: each image as Pillow's
    `Image.resize((width, height), Image.BICUBIC)` makes it (a view of four-byte pixels when C = 4)."""
    order = pillow_pass_order()
    if order is None:
        return _resize_with_pillow(images, height, width)
    return _resize(images, height, width, order)


def _resize(images: np.ndarray, height: int, width: int, order: str) -> np.ndarray:
    if images.dtype != np.uint8 or images.ndim < 3 or images.shape[-1] not in (3, 4):
        raise ValueError(f"expected uint8 images [..., H, W, 3 or 4], got {images.dtype} {images.shape}")
    if height < 1 or width < 1:
        raise ValueError(f"cannot resize to {height} x {width}")
    lead, (h, w, c) = images.shape[:-3], images.shape[-3:]
    x = np.ascontiguousarray(images).reshape(-1, h, w, c)
    passes = [_horizontal] * (width != w) + [_vertical] * (height != h)
    if vertical_first(order, h, w, height, width):
        passes.reverse()
    for resample in passes:
        x = resample(x, height, width)
    return x.reshape(*lead, height, width, x.shape[-1])[..., :3]


def _vertical(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """[N, H, W, C] -> [N, height, W, C]."""
    from lingshu_jax.processing import resize_kernels

    n, h, w, c = x.shape
    starts, weights = _taps(h, height)
    out = np.empty((n, height, w, c), np.uint8)
    resize_kernels.resample_lines(x.reshape(n, h, w * c), starts, weights, out.reshape(n, height, w * c))
    return out


def _horizontal(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """[N, H, W, C] -> [N, H, width, 4]: the vertical pass on the transposed images."""
    return _transposed(_vertical(_transposed(x), width, height))


def _transposed(x: np.ndarray) -> np.ndarray:
    """[N, A, B, C] -> [N, B, A, 4], C-contiguous, four bytes a pixel (three-byte pixels get a fourth,
    so that a pixel moves as one uint32)."""
    n, a, b, c = x.shape
    if c == 3:
        from lingshu_jax.processing import resize_kernels

        padded = np.empty((n, a, b, 4), np.uint8)
        resize_kernels.pad_pixels(np.ascontiguousarray(x).reshape(-1), padded.reshape(-1))
        x = padded
    pixels = np.ascontiguousarray(x).view(np.uint32)[..., 0]  # [N, A, B]
    return np.ascontiguousarray(pixels.swapaxes(1, 2)).view(np.uint8).reshape(n, b, a, 4)


@functools.lru_cache(maxsize=1024)
def _taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    from lingshu_jax.processing import resize_kernels

    starts, weights = resize_kernels.bicubic_taps(in_size, out_size)
    starts.flags.writeable = weights.flags.writeable = False  # shared by every call (cache)
    return starts, weights


def _resize_with_pillow(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """[..., H, W, 3 or 4] -> [..., height, width, 3] with Pillow, image by image."""
    lead, (h, w) = images.shape[:-3], images.shape[-3:-1]
    rgb = np.ascontiguousarray(images[..., :3]).reshape(-1, h, w, 3)
    out = [np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC)) for image in rgb]
    return np.stack(out).reshape(*lead, height, width, 3)


# Shapes where the pass orders differ ([100, 37] -> [56, 84] is vertical first in Pillow 13), plus an
# upscale and a shrink in both directions (a video frame, a large image).
_PROBES = (((100, 37), (56, 84)), ((224, 224), (336, 336)), ((150, 130), (84, 112)))


@functools.cache
def pillow_pass_order() -> str | None:
    """The installed Pillow's pass order (HORIZONTAL_FIRST or VERTICAL_FIRST_WHEN_HEIGHT_SHRINKS_MORE),
    found by resizing a few random images both ways and with Pillow; None (with a warning) where neither
    order reproduces Pillow, or numba does not import: `resize_bicubic` then calls Pillow."""
    try:
        import numba  # noqa: F401
    except ImportError as e:
        warnings.warn(f"numba does not import ({e}); images are resized with Pillow", stacklevel=2)
        return None
    rng = np.random.default_rng(0)
    probes = [(rng.integers(0, 256, (*size, 3), dtype=np.uint8), out) for size, out in _PROBES]
    wanted = [_resize_with_pillow(image, *out) for image, out in probes]
    for order in (VERTICAL_FIRST_WHEN_HEIGHT_SHRINKS_MORE, HORIZONTAL_FIRST):
        if all(
            np.array_equal(_resize(image, *out, order), want)
            for (image, out), want in zip(probes, wanted, strict=True)
        ):
            return order
    warnings.warn(
        f"the compiled bicubic resize does not reproduce Pillow {Image.__version__}; images are resized "
        "with Pillow (slower, same pixels)",
        stacklevel=2,
    )
    return None
