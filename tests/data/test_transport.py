"""Transport between processes: uint8 rows + the processor's lookup table are bit-identical to its float
rows; groups split back into samples in order, with exact resume inside a group."""
import grain
import numpy as np
import pytest
from PIL import Image

from lingshu_jax.data import transport
from lingshu_jax.processing.image import ImageProcessor


@pytest.mark.parametrize("size", [(56, 56), (100, 61), (448, 448), (30, 500)])
def test_uint8_rows_through_the_lut_equal_the_float_rows(size):
  proc = ImageProcessor()
  rng = np.random.default_rng(size[0])
  images = [Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)),
            Image.fromarray(rng.integers(0, 256, (size[0], size[1]), dtype=np.uint8))]  # grey too
  want = proc(images)
  got = transport.Uint8Images.wrap(proc)(images)
  assert got["pixel_values"].dtype == np.uint8
  np.testing.assert_array_equal(got["image_grid_thw"], want["image_grid_thw"])
  floats = transport.normalize_rows(got["pixel_values"], transport.pixel_lut(proc))
  assert floats.dtype == np.float32
  np.testing.assert_array_equal(floats, want["pixel_values"])


def _group(i):
  n = i % 3  # groups of 0..2 samples, some with pixels, one skip record
  samples = [{"input_ids": np.full(2, 10 * i + k), "pixel_rows": k} for k in range(n)]
  if i == 2:
    samples.append({"error": "bad_record", "where": "f:1", "stats": {}})
  pixels = np.concatenate([np.full((k, 4), 10 * i + k, np.uint8) for k in range(n)] or [np.zeros((0, 4))])
  return {"samples": samples, "pixels": pixels}


def test_ungroup_splits_in_order_and_resumes_inside_a_group():
  ds = transport.UngroupIterDataset(grain.MapDataset.range(7).map(_group).to_iter_dataset())
  everything = list(iter(ds))
  ids = [int(s["input_ids"][0]) if "input_ids" in s else -1 for s in everything]
  assert ids == [10, 20, 21, -1, 40, 50, 51]
  assert [len(s["pixel_values"]) for s in everything if "input_ids" in s] == [0, 0, 1, 0, 0, 1]
  assert all((s["pixel_values"] == s["input_ids"][0]).all() for s in everything if "input_ids" in s)
  for stop in range(len(everything)):
    it = iter(ds)
    for _ in range(stop):
      next(it)
    state = it.get_state()
    fresh = iter(ds)
    fresh.set_state(state)
    rest = [int(s["input_ids"][0]) if "input_ids" in s else -1 for s in fresh]
    assert rest == ids[stop:], stop
