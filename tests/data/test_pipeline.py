"""Pipeline: exact resume (also through Orbax), the same batches for 0, 1 and 2 workers, host sharding,
weighted mixtures, epochs, and counters that add up across worker processes."""

import itertools
import json

import numpy as np
import pytest

from lingshu_jax.data import DataConfig, make_pipeline, restore_state, save_state

from .helpers import data_config, mixed_dataset, text_only, write_jsonl


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return mixed_dataset(str(tmp_path_factory.mktemp("mixed")), n=40)


@pytest.mark.parametrize("stop", [1, 2, 5])  # inside and at the end of a 2-batch pool
def test_resume_is_exact(dataset, processor, model_config, stop):
    cfg = data_config(dataset, pack_pool=2, epochs=2, seq_len=192)
    it = make_pipeline(cfg, None, processor, model_config, seed=5)
    for _ in range(stop):
        next(it)
    state = it.get_state()
    rest = list(it)
    fresh = make_pipeline(cfg, None, processor, model_config, seed=5)
    fresh.set_state(state)
    assert_same_batches(list(fresh), rest)
    assert fresh.counters == it.counters  # counters are part of the state


def test_state_from_another_pipeline_is_refused(dataset, processor, model_config):
    it = make_pipeline(data_config(dataset), None, processor, model_config, seed=5)
    next(it)
    other = make_pipeline(data_config(dataset, batch_size=3), None, processor, model_config, seed=5)
    with pytest.raises(ValueError, match="saved by a different pipeline"):
        other.set_state(it.get_state())


def test_state_after_a_worker_count_change_is_refused_naming_what_changed(dataset, processor, model_config):
    it = make_pipeline(data_config(dataset), None, processor, model_config, seed=5)
    next(it)
    state = it.get_state()
    it.close()
    other = make_pipeline(data_config(dataset, worker_count=1), None, processor, model_config, seed=5)
    with pytest.raises(ValueError, match=r"changed: data.worker_count: 0 -> 1\. The same sources") as e:
        other.set_state(state)
    other.close()
    print(e.value)


def test_config_dict_is_accepted(dataset):
    import ml_collections

    cfg = DataConfig.from_dict(
        ml_collections.ConfigDict(
            {"sources": [{"name": "d", "path": dataset, "weight": 2.0}], "seq_len": 64, "packing": True}
        )
    )
    assert cfg.sources[0].weight == 2.0 and cfg.segments_per_row == 64


def test_orbax_save_restore_with_workers(tmp_path, dataset, processor, model_config):
    import orbax.checkpoint as ocp

    cfg = data_config(dataset, worker_count=2, prefetch=2)
    it = make_pipeline(cfg, None, processor, model_config, seed=1)
    for _ in range(3):
        next(it)
    with ocp.CheckpointManager(tmp_path / "ckpt", item_names=("data", "meta")) as mngr:
        save_state(mngr, 3, it, meta=ocp.args.JsonSave({"step": 3}))
        mngr.wait_until_finished()
        expected = [next(it) for _ in range(3)]
        it.close()
        fresh = make_pipeline(cfg, None, processor, model_config, seed=1)
        restored = restore_state(mngr, 3, fresh, meta=ocp.args.JsonRestore())
    assert restored.meta == {"step": 3}
    assert_same_batches([next(fresh) for _ in range(3)], expected)
    fresh.close()


def test_same_batches_and_counters_for_any_worker_count(tmp_path, processor, model_config):
    path = mixed_dataset(str(tmp_path), n=30)
    with open(path, "a") as f:  # bad records are counted in the workers and summed in the main process
        f.write('{"broken\n' + json.dumps({"messages": [{"role": "robot", "content": "x"}]}) + "\n")
    runs = {}
    for workers in (0, 1, 2):
        it = make_pipeline(data_config(path, worker_count=workers), None, processor, model_config, seed=2)
        runs[workers] = list(it)
        runs[workers, "counters"] = it.counters
        it.close()
    assert_same_batches(runs[0], runs[1])
    assert_same_batches(runs[0], runs[2])
    assert runs[0, "counters"] == runs[1, "counters"] == runs[2, "counters"]
    c = runs[2, "counters"]
    assert c["skipped/malformed_json"] == 1 and c["skipped/unknown_role"] == 1 and c["samples"] == 30


def _sample_keys(it):
    keys = []
    for batch in it:
        for r in range(batch["segment_ids"].shape[0]):
            segs = batch["segment_ids"][r]
            keys += [batch["input_ids"][r][segs == s].tobytes() for s in np.unique(segs[segs > 0])]
    return keys


def test_host_shards_are_disjoint_and_cover_the_data(dataset, processor, model_config):
    cfg = data_config(dataset)
    every = sorted(_sample_keys(make_pipeline(cfg, None, processor, model_config, seed=4)))
    shards = [
        _sample_keys(make_pipeline(cfg, None, processor, model_config, seed=4, shard_index=i, shard_count=3))
        for i in range(3)
    ]
    assert sorted(itertools.chain(*shards)) == every
    assert all(len(s) in (13, 14) for s in shards)


def test_epochs_reshuffle_and_repeat(dataset, processor, model_config):
    cfg = data_config(dataset, packing=False, batch_size=1, epochs=2)
    keys = _sample_keys(make_pipeline(cfg, None, processor, model_config, seed=0))
    assert len(keys) == 80 and sorted(keys[:40]) == sorted(keys[40:]) and keys[:40] != keys[40:]
    other_seed = _sample_keys(make_pipeline(cfg, None, processor, model_config, seed=1))
    assert other_seed != keys


def test_weighted_mixture_follows_weights(tmp_path, processor, model_config):
    a = write_jsonl(tmp_path / "a.jsonl", [text_only(q=f"a{i}") for i in range(10)])
    b = write_jsonl(tmp_path / "b.jsonl", [text_only(q=f"b{i}") for i in range(10)])
    cfg = DataConfig.from_dict(
        {
            "sources": [{"name": "a", "path": a, "weight": 3.0}, {"name": "b", "path": b}],
            "seq_len": 128,
            "batch_size": 4,
            "patch_budget": 0,
            "packing": True,
            "num_samples": 40,
        }
    )
    it = make_pipeline(cfg, None, processor, model_config, seed=0)
    _ = list(it)
    assert it.counters["samples/a"] == 30 and it.counters["samples/b"] == 10


def test_float32_pixel_dtype_gives_the_uint8_batches_normalised(dataset, processor, model_config):
    runs = {}
    for dtype in ("uint8", "float32"):
        it = make_pipeline(data_config(dataset, pixel_dtype=dtype), None, processor, model_config, seed=6)
        runs[dtype] = [(batch, it.last_stats["patches/real"]) for batch in it]
    assert len(runs["uint8"]) == len(runs["float32"]) > 1
    for (u8, real), (f32, _) in zip(runs["uint8"], runs["float32"]):
        assert set(u8) == set(f32) | {"pixel_scale", "pixel_offset"}
        assert u8["pixel_values"].dtype == np.uint8 and f32["pixel_values"].dtype == np.float32
        for k in f32.keys() - {"pixel_values"}:
            np.testing.assert_array_equal(u8[k], f32[k], err_msg=k)
        normalised = u8["pixel_values"][:real] * u8["pixel_scale"] + u8["pixel_offset"]
        np.testing.assert_allclose(normalised, f32["pixel_values"][:real], rtol=0, atol=1e-6)
