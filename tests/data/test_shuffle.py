"""Block-local shuffle (data/shuffle.py, `data.parquet_shuffle_window`): each epoch is a seeded permutation
unlike the file order, each window of positions reads only its own few row groups (each row group decoded
once per epoch), single-record blocks of other sources stay globally mixed, and a resumed pipeline continues
the shuffled order exactly."""

import pickle

import grain
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lingshu_jax.data import DataConfig, make_pipeline
from lingshu_jax.data.columnar import ParquetSource
from lingshu_jax.data.mixture import build_mixture
from lingshu_jax.data.shuffle import BlockShuffleMapDataset

from .helpers import text_only, write_jsonl

BLOCKS = [5, 5, 5, 5, 5, 5, 5, 3]  # 38 records in 8 blocks


def _order(ds, epoch=0):
    n = len(ds)
    return np.asarray([ds[epoch * n + i] for i in range(n)])


def test_each_epoch_is_a_seeded_permutation_that_differs_from_file_order():
    base = grain.MapDataset.range(sum(BLOCKS))
    a = BlockShuffleMapDataset(base, BLOCKS, window=2, seed=3)
    first, second = _order(a, 0), _order(a, 1)  # range() reads index mod its length
    np.testing.assert_array_equal(np.sort(first), np.arange(len(a)))
    np.testing.assert_array_equal(np.sort(second), np.arange(len(a)))
    assert (first != np.arange(len(a))).any() and (first != second).any()
    np.testing.assert_array_equal(first, _order(BlockShuffleMapDataset(base, BLOCKS, window=2, seed=3)))
    assert (first != _order(BlockShuffleMapDataset(base, BLOCKS, window=2, seed=4))).any()
    np.testing.assert_array_equal(first, _order(pickle.loads(pickle.dumps(a))))  # as grain workers get it


@pytest.mark.parametrize("window", [1, 2, 3])
def test_each_window_of_positions_reads_only_window_many_blocks(window):
    base = grain.MapDataset.range(sum(BLOCKS))
    order = _order(BlockShuffleMapDataset(base, BLOCKS, window=window, seed=0))
    block_of = np.repeat(np.arange(len(BLOCKS)), BLOCKS)[order]
    start, seen = 0, set()
    while start < len(order):  # consecutive windows: `window` whole blocks each, in positions
        blocks = []
        for b in block_of[start:]:
            if b not in blocks and len(blocks) == window:
                break
            if b not in blocks:
                blocks.append(b)
        size = sum(BLOCKS[b] for b in blocks)
        assert set(block_of[start : start + size]) == set(blocks) and not seen & set(blocks)
        seen |= set(blocks)
        start += size
    assert seen == set(range(len(BLOCKS)))


def _parquet(tmp_path, n=38, group=5):
    path = str(tmp_path / "t.parquet")
    rows = [{"messages": text_only(f"q{i}")["messages"], "system": str(i)} for i in range(n)]
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=group)
    return path


def test_a_shuffled_parquet_epoch_decodes_each_row_group_at_most_once(tmp_path):
    path = _parquet(tmp_path)
    cfg = DataConfig.from_dict(
        dict(sources=[{"name": "pq", "path": path}], parquet_shuffle_window=2, parquet_cache_mb=1, epochs=2)
    )
    # A cache of 4 row groups (two windows) out of 8: a global shuffle keeps evicting and re-decoding.
    size = ParquetSource([path]).max_block_bytes
    source = ParquetSource([path], cache_bytes=4 * size)
    ds = build_mixture([source], cfg, seed=0)
    ids = [int(ds[i]["data"]["system"]) for i in range(len(ds))]
    assert sorted(ids[:38]) == sorted(ids[38:]) == list(range(38)) and ids[:38] != ids[38:]
    assert ids[:38] != list(range(38))
    assert source.cache.loads <= 2 * 8  # 8 row groups, at most once per epoch (one may stay cached across)
    other = ParquetSource([path], cache_bytes=4 * size)
    global_ds = build_mixture([other], cfg.replace(parquet_shuffle_window=0), 0)
    globally = [int(r["data"]["system"]) for r in global_ds]
    assert sorted(globally) == sorted(ids) and globally != ids
    assert other.cache.loads > 2 * 2 * 8


def test_jsonl_records_next_to_parquet_stay_globally_shuffled(tmp_path):
    path = _parquet(tmp_path, n=10)
    jsonl = write_jsonl(tmp_path / "t.jsonl", [{**text_only(f"j{i}"), "system": f"j{i}"} for i in range(30)])
    cfg = DataConfig.from_dict(
        dict(
            sources=[{"name": "pq", "path": path}, {"name": "j", "path": str(jsonl)}],
            parquet_shuffle_window=1,
        )
    )
    from lingshu_jax.data.sources import open_source

    ds = build_mixture([open_source(sc) for sc in cfg.sources], cfg, seed=1)
    jsonl_positions = [i for i in range(len(ds)) if ds[i]["source"] == 1]
    assert len(jsonl_positions) == 30 and jsonl_positions != list(range(10, 40))


def test_a_window_larger_than_the_cache_is_refused_naming_both_options(tmp_path):
    path = str(tmp_path / "big.parquet")
    rows = [{"messages": text_only(f"{i} " + "x" * 20000)["messages"]} for i in range(40)]
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=20)  # ~0.4 MiB row groups
    cfg = DataConfig.from_dict(
        dict(sources=[{"name": "pq", "path": path}], parquet_shuffle_window=4, parquet_cache_mb=1)
    )
    with pytest.raises(ValueError, match=r"parquet_shuffle_window=4.*parquet_cache_mb=1"):
        build_mixture([ParquetSource([path], cache_bytes=1 << 20)], cfg, seed=0)


def test_a_resumed_pipeline_continues_the_block_shuffled_order(tmp_path, processor, model_config):
    path = _parquet(tmp_path)
    cfg = dict(
        sources=[{"name": "pq", "path": path}],
        seq_len=64,
        batch_size=2,
        patch_budget=0,
        parquet_shuffle_window=2,
        epochs=2,
        prefetch=0,
    )
    it = make_pipeline(cfg, None, processor, model_config, seed=5)
    head = [next(it) for _ in range(7)]  # mid-epoch
    state = it.get_state()
    tail = list(it)
    it.close()
    resumed = make_pipeline(cfg, None, processor, model_config, seed=5)
    resumed.set_state(state)
    again = list(resumed)
    resumed.close()
    assert len(tail) == len(again) > 0
    for x, y in zip(tail, again):
        np.testing.assert_array_equal(x["input_ids"], y["input_ids"])
    plain = make_pipeline({**cfg, "shuffle": False}, None, processor, model_config, seed=5)
    ordered = [next(plain)["input_ids"] for _ in range(7)]
    plain.close()
    assert any((a["input_ids"] != b).any() for a, b in zip(head, ordered))
