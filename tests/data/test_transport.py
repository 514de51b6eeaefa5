"""Transport between processes: groups split back into samples in order, with exact resume inside a
group (uint8 pixel rows keep their dtype); reusable shared-memory slabs for whole groups (what crosses
grain's queue is one atomic pipe write); the data ends at an end marker, so a finite pipeline's last
batch does not wait for grain to join its workers."""

import gc
import os
import pickle
import select

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


def _rows(n, value, dim=4):
    return np.full((n, dim), value, np.uint8)


def test_slab_round_trip_is_zero_copy_and_the_name_is_unlinked_once_mapped():
    pool, reader = transport.SlabPool(max_slabs=4, min_bytes=1 << 20), transport.SlabReader()
    arrays = [np.arange(12, dtype=np.uint8).reshape(3, 4), _rows(2, 7)]
    ref = pool.put(arrays)
    rows = reader.view(ref)
    np.testing.assert_array_equal(rows, np.concatenate(arrays))
    assert rows.dtype == np.uint8 and not rows.flags.writeable
    assert not os.path.exists(f"/dev/shm/{ref.name}")  # both mappings stay; nothing to leak on a crash
    floats = pool.put([np.full((2, 3), 0.5, np.float32)])
    np.testing.assert_array_equal(reader.view(floats), np.full((2, 3), 0.5, np.float32))


def test_a_slab_returns_to_the_pool_only_when_every_view_of_its_group_is_gone():
    pool, reader = transport.SlabPool(max_slabs=2, min_bytes=1 << 20), transport.SlabReader()
    first = pool.put([_rows(3, 1)])
    rows = reader.view(first)
    second = pool.put([_rows(3, 2)])
    assert second.name != first.name  # the first slab is still viewed
    held = reader.view(second)
    assert pool.put([_rows(3, 3)]) is None  # both busy, at max_slabs: the caller falls back to grain's shm
    view = rows[1:]
    del rows
    gc.collect()
    assert pool.put([_rows(3, 4)]) is None  # a slice still refers to the first group
    del view
    gc.collect()
    third = pool.put([_rows(3, 5)])
    assert third.name == first.name
    np.testing.assert_array_equal(reader.view(third), _rows(3, 5))
    np.testing.assert_array_equal(held, _rows(3, 2))  # reuse of one slab leaves the other group intact


def test_slab_pool_limits_bytes_and_fits_groups_to_slabs():
    pool = transport.SlabPool(max_slabs=8, max_bytes=4 << 20, min_bytes=1 << 20)
    reader = transport.SlabReader()
    big = pool.put([_rows(1 << 19, 1)])  # 2 MiB: a slab of its own size
    held = reader.view(big)
    assert held.shape == (1 << 19, 4)
    assert pool.put([_rows(1 << 19, 2)]) is None  # another 2 MiB slab would pass max_bytes
    small = pool.put([_rows(4, 3)])  # 1 MiB more fits
    assert small is not None and small.name != big.name
    reader.view(small)


def test_group_transform_in_shared_memory_gives_the_same_samples():
    def transform(raw):
        if raw == 2:
            return {"error": "bad_record", "where": "f:3", "stats": {}}
        return {"input_ids": np.full(3, raw), "pixel_values": _rows(raw, raw, dim=1176)}

    raws = [0, 1, 2, 3]
    plain = transport.split_group(transport.GroupTransform(transform)(raws))
    group = transport.GroupTransform(transform, shared_memory=True)(raws)
    assert isinstance(group["pixels"], transport.SlabRef)
    shared = transport.split_group(group, transport.SlabReader())
    assert len(plain) == len(shared) == 4
    for p, s in zip(plain, shared):
        assert p.keys() == s.keys()
        for k in p:
            np.testing.assert_array_equal(p[k], s[k], err_msg=k)


def test_a_group_in_shared_memory_crosses_the_queue_in_one_atomic_pipe_write(monkeypatch):
    # A worker killed mid-write (the OOM killer) must not leave part of an element in its queue's pipe:
    # the element is a slab reference smaller than PIPE_BUF, whatever the group holds.
    def transform(raw):
        return {
            "input_ids": np.arange(4096) + raw,
            "where": f"f:{raw}",
            "pixel_values": _rows(raw, raw, 1176),
        }

    monkeypatch.setattr(transport, "_POOL", transport.SlabPool())  # (this process plays the worker)
    reader = transport.SlabReader()  # (one per worker pool, as in the main process)
    for raws in ([0, 0, 0], list(range(64))):  # text only; 64 samples with images
        group = transport.GroupTransform(transform, shared_memory=True)(raws)
        element = (group, {"next_index": 10**9}, 10**9, None, None)  # what grain's worker puts in its queue
        assert len(pickle.dumps(element)) < select.PIPE_BUF
        plain = transport.split_group(transport.GroupTransform(transform)(raws))
        shared = transport.split_group(group, reader)
        for p, s in zip(plain, shared, strict=True):
            np.testing.assert_array_equal(p["input_ids"], s["input_ids"])
            np.testing.assert_array_equal(p["pixel_values"], s["pixel_values"])


def test_no_shared_memory_means_grains_path(monkeypatch):
    def unavailable(name, size):
        raise OSError("no /dev/shm")

    monkeypatch.setattr(transport, "_shm_create", unavailable)
    assert transport.SlabPool().put([_rows(2, 1)]) is None


def test_ungroup_ends_at_the_first_end_marker_and_stays_ended_after_resume():
    groups = transport.end_marked(grain.MapDataset.range(7).map(_group), markers=3)
    assert (
        len(groups) == 10 and transport.end_marked(grain.MapDataset.range(7).repeat(), 3).__len__() > 10**15
    )
    ds = transport.UngroupIterDataset(groups.to_iter_dataset())
    it = iter(ds)
    ids = [int(s["input_ids"][0]) if "input_ids" in s else -1 for s in it]
    assert ids == [10, 20, 21, -1, 40, 50, 51]  # as without markers
    state = it.get_state()
    assert list(it) == []
    again = iter(ds)
    again.set_state(state)
    assert list(again) == []


def test_a_finite_pipeline_with_workers_ends_without_joining_them(tmp_path, processor, model_config):
    """grain joins a worker whose shard runs out (about a second, no batch arriving); with end markers the
    last batch comes while the workers still wait, and `close()` stops them. Batches are unchanged."""
    import psutil

    from lingshu_jax.data import make_pipeline

    from .helpers import data_config, mixed_dataset

    cfg = data_config(mixed_dataset(str(tmp_path), n=12), shuffle=False)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    it = make_pipeline(cfg.replace(worker_count=2), None, processor, model_config)
    batches = list(it)
    workers = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    assert len([p for p in workers if p.status() != psutil.STATUS_ZOMBIE]) >= 2  # not joined at the end
    it.close()
    plain = make_pipeline(cfg, None, processor, model_config)
    want = list(plain)
    plain.close()
    assert len(batches) == len(want) > 0 and it.counters == plain.counters
    for x, y in zip(batches, want):
        np.testing.assert_array_equal(x["input_ids"], y["input_ids"])
        np.testing.assert_array_equal(x["pixel_values"], y["pixel_values"])
