"""DICOM windowing (hand-computed), MONOCHROME1, bad inputs (empty, non-image, no pixel data, bombs)."""

import io
import struct
import zlib

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from lingshu_jax.processing.dicom import load_dicom, load_image


def _dicom_linear(x: float, c: float, w: float) -> int:
    """DICOM PS3.3 C.11.2.1.2.1 LINEAR window, output range [0, 255], written per pixel."""
    if x <= c - 0.5 - (w - 1) / 2:
        return 0
    if x > c - 0.5 + (w - 1) / 2:
        return 255
    return int(np.rint(((x - (c - 0.5)) / (w - 1) + 0.5) * 255))


def _save(ds, path):
    ds.save_as(str(path))
    return str(path)


def test_mr_window_matches_hand_computed_linear_function():
    path = get_testdata_file("MR_small.dcm")
    ds = pydicom.dcmread(path)
    assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (600.0, 1600.0) and "RescaleSlope" not in ds
    out = np.array(load_image(path))
    assert (
        out.shape == (64, 64, 3) and (out[..., 0] == out[..., 1]).all() and (out[..., 0] == out[..., 2]).all()
    )
    raw = ds.pixel_array
    for y, x in [
        (0, 0),
        (10, 20),
        (32, 32),
        (63, 1),
        *zip(*np.unravel_index([raw.argmin(), raw.argmax()], raw.shape)),
    ]:
        assert out[y, x, 0] == _dicom_linear(float(raw[y, x]), 600, 1600), (y, x, raw[y, x])
    # e.g. the darkest stored value 127 -> ((127 - 599.5) / 1599 + 0.5) * 255 = 52.15 -> 52
    assert out[..., 0].min() == 52 and raw.min() == 127


def test_ct_rescale_then_first_window_of_multivalued(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, -1024.0)
    ds.WindowCenter, ds.WindowWidth = [40, 400], [400, 2000]  # soft-tissue window first
    out = np.array(load_image(_save(ds, tmp_path / "ct.dcm")))[..., 0]
    hu = ds.pixel_array.astype(np.float64) - 1024
    expect = np.vectorize(lambda v: _dicom_linear(v, 40, 400))(hu)
    np.testing.assert_array_equal(out, expect)


def test_no_window_falls_back_to_min_max():
    path = get_testdata_file("CT_small.dcm")
    hu = pydicom.dcmread(path).pixel_array.astype(np.float64) - 1024
    out = np.array(load_image(path))[..., 0]
    np.testing.assert_array_equal(
        out, np.rint((hu - hu.min()) / (hu.max() - hu.min()) * 255).astype(np.uint8)
    )


def test_monochrome1_is_inverted(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    normal = np.array(load_image(_save(ds, tmp_path / "m2.dcm")))
    ds.PhotometricInterpretation = "MONOCHROME1"
    inverted = np.array(load_image(_save(ds, tmp_path / "m1.dcm")))
    np.testing.assert_array_equal(inverted, 255 - normal)


def test_dicom_is_detected_by_magic_not_extension(tmp_path):
    with open(get_testdata_file("MR_small.dcm"), "rb") as f:
        data = f.read()
    (tmp_path / "scan.bin").write_bytes(data)
    a = np.array(load_image(str(tmp_path / "scan.bin")))
    np.testing.assert_array_equal(a, np.array(load_image(data)))
    np.testing.assert_array_equal(a, np.array(load_image(get_testdata_file("MR_small.dcm"))))


def test_dicom_without_pixel_data_raises_naming_the_file(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.PixelData
    path = _save(ds, tmp_path / "nopix.dcm")
    with pytest.raises(ValueError, match=r"nopix\.dcm: DICOM file has no pixel data"):
        load_image(path)


def test_dicom_with_zero_rows_or_too_many_pixels_is_refused(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    with pytest.raises(ValueError, match=r"ct\.dcm: DICOM has .* pixels, more than the limit of 1000"):
        load_dicom(_save(ds, tmp_path / "ct.dcm"), max_pixels=1000)
    ds.Rows = 0
    with pytest.raises(ValueError, match=r"zero\.dcm: DICOM image has no pixels"):
        load_image(_save(ds, tmp_path / "zero.dcm"))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but whose image data is empty."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def test_zero_pixel_image_raises_naming_the_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(_png_header_only(0, 10))
    with pytest.raises(ValueError, match=r"empty\.png"):
        load_image(str(path))


def test_non_image_file_raises_naming_the_file(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not an image")
    with pytest.raises(ValueError, match=r"notes\.jpg: not a readable image file"):
        load_image(str(path))
    with pytest.raises(ValueError, match=r"missing\.png: no such file"):
        load_image(str(tmp_path / "missing.png"))


def test_decompression_bomb_header_is_refused_before_decoding(tmp_path):
    # 12000 x 12000 = 144 MP: below PIL's own hard error, above our default limit; the data is empty, so a
    # decode attempt would fail differently -- the message proves the check ran on the header alone.
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(12000, 12000))
    with pytest.raises(ValueError, match=r"bomb\.png: image has 12000x12000 .* refused before decoding"):
        load_image(str(path))
    with pytest.raises(ValueError, match=r"huge\.png: image too large"):  # PIL's hard limit, also wrapped
        (tmp_path / "huge.png").write_bytes(_png_header_only(100000, 100000))
        load_image(str(tmp_path / "huge.png"))
    small = tmp_path / "small.png"
    Image.new("RGB", (64, 64)).save(small)
    with pytest.raises(ValueError, match=r"small\.png: .* more than the limit of 1000"):
        load_image(str(small), max_pixels=1000)


def test_png_jpeg_and_rgba_load_like_transformers_load_image(tmp_path):
    image_utils = pytest.importorskip("transformers.image_utils")
    rs = np.random.RandomState(0)
    rgba = Image.fromarray(rs.randint(0, 256, (40, 30, 4), dtype=np.uint8))
    rgba.save(tmp_path / "a.png")
    rgba.convert("RGB").save(tmp_path / "b.jpg", quality=90)
    gray = Image.fromarray(rs.randint(0, 256, (20, 25), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    gray.save(tmp_path / "c.jpg", exif=exif)
    rgba.convert("RGB").save(tmp_path / "d.jpg", exif=exif)  # RGB + orientation: transposed in place
    for name in ("a.png", "b.jpg", "c.jpg", "d.jpg"):
        ours = load_image(str(tmp_path / name))
        ref = image_utils.load_image(str(tmp_path / name))
        assert ours.mode == "RGB"
        np.testing.assert_array_equal(np.array(ours), np.array(ref))
    assert load_image(str(tmp_path / "c.jpg")).size == (20, 25)  # EXIF orientation applied
    assert load_image(str(tmp_path / "d.jpg")).size == (40, 30)
    assert load_image(io.BytesIO((tmp_path / "b.jpg").read_bytes())).size == (30, 40)
