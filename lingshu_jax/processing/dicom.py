"""Image loading for training/eval data: JPEG/PNG/... via PIL and DICOM via pydicom, to PIL RGB.

`load_image(source)` dispatches on content (DICOM magic "DICM" at byte 128, or a .dcm/.dicom/.dic name for
preamble-less files), checks the pixel count from the header against `max_pixels` BEFORE decoding
(decompression-bomb guard), and raises `ValueError` naming the file for empty images, non-image files and
DICOMs without pixel data.

DICOM -> 8-bit: modality LUT (RescaleSlope/Intercept), then the VOI window (first WindowCenter/Width when
multi-valued; VOILUTFunction LINEAR (default, DICOM PS3.3 C.11.2.1.2.1), LINEAR_EXACT or SIGMOID); without a
usable window, min-max scaling. MONOCHROME1 is inverted after windowing. Output values are
round(255 * y) for y in [0, 1]. Multi-frame files give their first frame (or `frame=`). Colour DICOMs
(RGB, YBR_* converted by pydicom, PALETTE COLOR) are scaled to 8 bits when stored with more.
Explicit VOI LUT sequences are not applied (the window or min-max is used instead).
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
from PIL import Image, ImageOps

DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485  # PIL's own warning threshold (~89.5 MP)
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")


def _name_and_bytes_head(source) -> tuple[str, bytes]:
    if isinstance(source, (bytes, bytearray)):
        return "<bytes>", bytes(source[:132])
    if hasattr(source, "read"):
        pos = source.tell()
        head = source.read(132)
        source.seek(pos)
        return getattr(source, "name", "<stream>"), head
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    with open(path, "rb") as f:
        return path, f.read(132)


def is_dicom(source, name: str | None = None) -> bool:
    """True for data with the DICOM magic, or a DICOM file name suffix."""
    src_name, head = _name_and_bytes_head(source)
    name = name or src_name
    return head[128:132] == b"DICM" or str(name).lower().endswith(DICOM_SUFFIXES)


def load_image(
    source, max_pixels: int | None = DEFAULT_MAX_PIXELS, name: str | None = None, frame: int = 0
) -> Image.Image:
    """Path / bytes / binary stream -> PIL RGB image (upright per EXIF). ValueError names the file.

    max_pixels: header width*height (*frames for DICOM) above this is refused before decoding; None = no cap.
    """
    src_name, head = _name_and_bytes_head(source)
    name = name or src_name
    if head[128:132] == b"DICM" or str(name).lower().endswith(DICOM_SUFFIXES):
        return load_dicom(source, max_pixels=max_pixels, name=name, frame=frame)
    return _load_pil(source, max_pixels, name)


def _load_pil(source, max_pixels: int | None, name: str) -> Image.Image:
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        with warnings.catch_warnings():  # our own limit below replaces PIL's warning threshold
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(stream)  # reads the header only
    except Image.DecompressionBombError as e:
        raise ValueError(f"{name}: image too large, refused before decoding ({e})") from e
    except (Image.UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{name}: not a readable image file ({e})") from e
    with image:
        width, height = image.size
        if width <= 0 or height <= 0:
            raise ValueError(f"{name}: image has no pixels ({width}x{height})")
        if max_pixels is not None and width * height > max_pixels:
            raise ValueError(
                f"{name}: image has {width}x{height} = {width * height} pixels, more than the limit "
                f"of {max_pixels}; refused before decoding (possible decompression bomb)"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image.load()
            # Same steps as transformers' load_image: EXIF orientation, then plain RGB conversion (in place
            # and only when needed: each copy of a decoded image costs about as much as 10% of decoding it).
            ImageOps.exif_transpose(image, in_place=True)
            return image if image.mode == "RGB" else image.convert("RGB")
        except (OSError, ValueError, SyntaxError) as e:
            raise ValueError(f"{name}: cannot decode image ({e})") from e


def _read_dicom(source, name: str, stop_before_pixels: bool):
    import pydicom

    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    if hasattr(stream, "seek"):
        stream.seek(0)
    try:
        return pydicom.dcmread(stream, stop_before_pixels=stop_before_pixels, force=True)
    except Exception as e:  # pydicom raises InvalidDicomError, EOFError, struct errors...
        raise ValueError(f"{name}: not a readable DICOM file ({type(e).__name__}: {e})") from e


def load_dicom(
    source, max_pixels: int | None = DEFAULT_MAX_PIXELS, name: str | None = None, frame: int = 0
) -> Image.Image:
    """DICOM path / bytes / stream -> PIL RGB (windowed 8-bit; see the module docstring)."""
    name = name or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<dicom>")
    header = _read_dicom(source, name, stop_before_pixels=True)
    rows, cols = int(header.get("Rows", 0) or 0), int(header.get("Columns", 0) or 0)
    frames = int(header.get("NumberOfFrames", 1) or 1)
    if rows <= 0 or cols <= 0:
        raise ValueError(f"{name}: DICOM image has no pixels (Rows={rows}, Columns={cols})")
    if max_pixels is not None and rows * cols * frames > max_pixels:
        raise ValueError(
            f"{name}: DICOM has {frames}x{rows}x{cols} = {rows * cols * frames} pixels, more than "
            f"the limit of {max_pixels}; refused before decoding"
        )
    ds = _read_dicom(source, name, stop_before_pixels=False)
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ValueError(f"{name}: DICOM file has no pixel data")
    try:
        pixels = ds.pixel_array
    except Exception as e:  # missing decoder plugin, corrupt data
        raise ValueError(f"{name}: cannot decode DICOM pixel data ({type(e).__name__}: {e})") from e
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames > 1:
        if not 0 <= frame < pixels.shape[0]:
            raise ValueError(f"{name}: frame {frame} out of range (the file has {pixels.shape[0]} frames)")
        pixels = pixels[frame]
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if samples == 1 and photometric.startswith("MONOCHROME"):
        gray = dicom_to_uint8(pixels, ds)
        return Image.fromarray(gray).convert("RGB")
    return Image.fromarray(_color_to_uint8(pixels, ds, photometric, name))


def _first(value) -> float | None:
    """First value of a possibly multi-valued DICOM number, as float (None when absent/empty)."""
    if value is None or value == "":
        return None
    try:
        return float(value[0]) if hasattr(value, "__len__") and not isinstance(value, str) else float(value)
    except (TypeError, ValueError, IndexError):
        return None


def dicom_to_uint8(pixels: np.ndarray, ds) -> np.ndarray:
    """Monochrome stored values [H, W] -> uint8 [H, W]: rescale, window (or min-max), MONOCHROME1 inversion."""
    slope = _first(ds.get("RescaleSlope"))
    intercept = _first(ds.get("RescaleIntercept"))
    x = pixels.astype(np.float64) * (1.0 if slope is None else slope) + (
        0.0 if intercept is None else intercept
    )
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    y = apply_window(x, center, width, function) if center is not None and width else None
    if y is None:
        y = min_max(x)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        y = 1.0 - y
    return np.rint(y * 255.0).astype(np.uint8)


def apply_window(x: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray | None:
    """Values -> [0, 1] through a DICOM VOI window (None when the width is unusable for the function)."""
    if function == "SIGMOID":
        if width <= 0:
            return None
        return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    if function == "LINEAR_EXACT":
        if width <= 0:
            return None
        return np.clip((x - center) / width + 0.5, 0.0, 1.0)
    if width < 1:  # LINEAR requires width >= 1 (PS3.3 C.11.2.1.2.1)
        return None
    if width == 1:  # degenerate: a threshold at center - 0.5
        return (x > center - 0.5).astype(np.float64)
    return np.clip((x - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0)


def min_max(x: np.ndarray) -> np.ndarray:
    """Values -> [0, 1] by the image's own range (zeros for a constant image)."""
    lo, hi = float(np.min(x)), float(np.max(x))
    if hi <= lo:
        return np.zeros_like(x, dtype=np.float64)
    return (x - lo) / (hi - lo)


def _color_to_uint8(pixels: np.ndarray, ds, photometric: str, name: str) -> np.ndarray:
    """Colour DICOM pixels -> uint8 [H, W, 3] (pydicom already converts YBR_* to RGB)."""
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        pixels = apply_color_lut(pixels, ds)
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ValueError(
            f"{name}: unsupported DICOM photometric interpretation {photometric} "
            f"with pixel shape {pixels.shape}"
        )
    if pixels.dtype == np.uint8:
        return pixels
    bits = int(ds.get("BitsStored", 16) or 16)
    if photometric == "PALETTE COLOR":
        bits = 16
    return np.rint(np.clip(pixels.astype(np.float64) / (2**bits - 1), 0, 1) * 255).astype(np.uint8)
