"""Transport between processes: groups split back into samples in order, with exact resume inside a
group (uint8 pixel rows keep their dtype)."""

import grain
import numpy as np

from lingshu_jax.data import transport


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
    with_pixels = [s["pixel_values"] for s in everything if len(s.get("pixel_values", ()))]
    assert {p.dtype for p in with_pixels} == {np.dtype(np.uint8)}
    for stop in range(len(everything)):
        it = iter(ds)
        for _ in range(stop):
            next(it)
        state = it.get_state()
        fresh = iter(ds)
        fresh.set_state(state)
        rest = [int(s["input_ids"][0]) if "input_ids" in s else -1 for s in fresh]
        assert rest == ids[stop:], stop
