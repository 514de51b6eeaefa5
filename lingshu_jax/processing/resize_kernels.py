"""The compiled parts of `processing.resize` (numba, imported on first use): Pillow's bicubic weights and
one resampling pass along the lines of uint8 images.

Each mirrors `libImaging/Resample.c` (`precompute_coeffs`, `normalize_coeffs_8bpc`, the 8-bit passes)
operation for operation, in the same float64 and int32 arithmetic, so that the results are Pillow's bit
for bit; `tests/processing/test_resize.py` compares them with Pillow over many sizes.
"""

from __future__ import annotations

import math

import numba
import numpy as np

PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed-point weights: 22 fractional bits, 2 bits of headroom


@numba.njit(cache=True)
def bicubic(x: float) -> float:
    """Pillow's bicubic filter (a = -0.5), support 2."""
    if x < 0.0:
        x = -x
    if x < 1.0:
        return (1.5 * x - 2.5) * x * x + 1  # ((a + 2) * x - (a + 3)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * -0.5
    return 0.0


@numba.njit(cache=True)
def bicubic_taps(in_size: int, out_size: int):
    """Pillow's fixed-point bicubic weights for resizing a line of in_size pixels to out_size ->
    (starts int32 [out_size], weights int32 [out_size, taps]): output pixel o is the weighted sum of
    source pixels starts[o] .. starts[o] + taps - 1 (zero weights pad each window to `taps`, which is
    Pillow's window size or in_size if smaller, and starts are moved back where a window would end past
    the line)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    taps = min(ksize, in_size)
    inverse = 1.0 / filterscale
    one = float(1 << PRECISION_BITS)
    starts = np.empty(out_size, np.int32)
    weights = np.zeros((out_size, taps), np.int32)
    window = np.empty(ksize)
    for o in range(out_size):
        center = (o + 0.5) * scale
        total = 0.0
        first = max(int(center - support + 0.5), 0)
        count = min(int(center + support + 0.5), in_size) - first
        for x in range(count):
            w = bicubic((x + first - center + 0.5) * inverse)
            window[x] = w
            total += w
        start = min(first, in_size - taps)
        for x in range(count):
            w = window[x] / total if total != 0.0 else window[x]
            weights[o, first - start + x] = int(-0.5 + w * one) if w < 0 else int(0.5 + w * one)
        starts[o] = start
    return starts, weights


@numba.njit(cache=True)
def resample_lines(src: np.ndarray, starts: np.ndarray, weights: np.ndarray, out: np.ndarray) -> None:
    """One pass along axis 1: out[n, o, :] = clip8(sum_t weights[o, t] * src[n, starts[o] + t, :]) for
    uint8 src [N, R, L] and out [N, O, L] (C-contiguous); rounding and clipping as Pillow's clip8."""
    length = src.shape[2]
    acc = np.empty(length, np.int32)
    half = np.int32(1 << (PRECISION_BITS - 1))
    for n in range(src.shape[0]):
        for o in range(out.shape[1]):
            acc[:] = half
            for t in range(weights.shape[1]):
                w = weights[o, t]
                if w != 0:
                    line = src[n, starts[o] + t]
                    for i in range(length):
                        acc[i] += line[i] * w
            dst = out[n, o]
            for i in range(length):
                v = acc[i] >> PRECISION_BITS
                dst[i] = 0 if v < 0 else (255 if v > 255 else v)


@numba.njit(cache=True)
def pad_pixels(src: np.ndarray, out: np.ndarray) -> None:
    """Three-byte pixels to four: out[4i : 4i+3] = src[3i : 3i+3], out[4i+3] = 0, for flat uint8 arrays
    (flat indexing: numba vectorises it)."""
    for i in range(src.size // 3):
        out[4 * i] = src[3 * i]
        out[4 * i + 1] = src[3 * i + 1]
        out[4 * i + 2] = src[3 * i + 2]
        out[4 * i + 3] = 0
