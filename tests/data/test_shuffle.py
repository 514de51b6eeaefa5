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
from lingshu_jax.data.mixture import build_mixture, shard
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
    globally = [int(global_ds[i]["data"]["system"]) for i in range(len(global_ds))]
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


def _block_shuffled(path: str) -> dict:
    """A pipeline config over one Parquet source, shuffled in windows of 2 row groups, for 2 epochs."""
    return dict(
        sources=[{"name": "pq", "path": path}],
        seq_len=64,
        batch_size=2,
        patch_budget=0,
        parquet_shuffle_window=2,
        epochs=2,
        prefetch=0,
    )


def test_a_resumed_pipeline_continues_the_block_shuffled_order(tmp_path, processor, model_config):
    path = _parquet(tmp_path)
    cfg = _block_shuffled(path)
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


@pytest.mark.parametrize("hosts", [2, 3])
def test_hosts_take_disjoint_spans_of_each_epoch_that_cover_it_reading_their_own_blocks(hosts):
    base = grain.MapDataset.range(sum(BLOCKS))
    shares = [
        BlockShuffleMapDataset(base, BLOCKS, window=2, seed=3, shard_index=h, shard_count=hosts)
        for h in range(hosts)
    ]
    block_of = np.repeat(np.arange(len(BLOCKS)), BLOCKS)
    for epoch in (0, 1):
        orders = [_order(s, epoch) for s in shares]
        assert [len(o) for o in orders] == [len(range(h, 38, hosts)) for h in range(hosts)]
        np.testing.assert_array_equal(np.sort(np.concatenate(orders)), np.arange(38))  # each record once
        # A host reads about 1/hosts of the blocks: its own, plus at most the two it shares at its span's ends.
        assert all(len(set(block_of[o])) <= -(-len(BLOCKS) // hosts) + 2 for o in orders)
        assert sum(len(set(block_of[o])) for o in orders) <= len(BLOCKS) + 2 * (hosts - 1)
    assert any((_order(s, 0) != _order(s, 1)).any() for s in shares)  # each epoch reshuffles
    clone = pickle.loads(pickle.dumps(shares[1]))
    np.testing.assert_array_equal(
        _order(clone, 1), _order(shares[1], 1)
    )  # stateless: as grain workers get it


def test_two_hosts_decode_about_half_of_the_row_groups_each(tmp_path):
    path = _parquet(tmp_path, n=80, group=5)  # 16 row groups
    cfg = DataConfig.from_dict(
        dict(sources=[{"name": "pq", "path": path}], parquet_shuffle_window=2, parquet_cache_mb=1, epochs=1)
    )
    seen, loads = [], []
    for host in range(2):
        source = ParquetSource([path])
        ds = build_mixture([source], cfg, seed=0, shard_index=host, shard_count=2)
        seen.append([int(ds[i]["data"]["system"]) for i in range(len(ds))])
        loads.append(source.cache.loads)
    assert len(seen[0]) == len(seen[1]) == 40 and sorted(seen[0] + seen[1]) == list(range(80))
    assert all(8 <= n <= 9 for n in loads), loads  # 16 row groups: each host decodes its own (+1 shared)
    # Before: every host read the whole block-shuffled order and took every 2nd record: all 16 row groups.
    strided = ParquetSource([path])
    reference = shard(build_mixture([strided], cfg, seed=0), 0, 2)
    [reference[i] for i in range(len(reference))]
    assert strided.cache.loads == 16


def test_a_weighted_mixture_on_two_hosts_splits_each_sources_epoch(tmp_path):
    path = _parquet(tmp_path, n=40, group=5)
    jsonl = write_jsonl(tmp_path / "t.jsonl", [{**text_only(f"j{i}"), "system": f"j{i}"} for i in range(20)])
    cfg = DataConfig.from_dict(
        dict(
            sources=[
                {"name": "pq", "path": path, "weight": 2.0},
                {"name": "j", "path": str(jsonl), "weight": 1.0},
            ],
            parquet_shuffle_window=2,
            epochs=1,
        )
    )
    from lingshu_jax.data.sources import open_source

    streams = [
        [
            (r["source"], r["where"])
            for r in build_mixture([open_source(sc) for sc in cfg.sources], cfg, 1, h, 2)
        ]
        for h in range(2)
    ]
    assert [len(s) for s in streams] == [30, 30]  # the strided share of epochs * 60 records
    for source, n in ((0, 40), (1, 20)):  # 2:1 -> each host reads one epoch of its span of each source
        rows = [[r for s, r in stream if s == source] for stream in streams]
        assert len(rows[0]) == len(rows[1]) == n // 2 and len(set(rows[0]) | set(rows[1])) == n


def test_two_hosts_block_shuffled_batches_resume_exactly_and_do_not_depend_on_worker_count(
    tmp_path, processor, model_config
):
    path = _parquet(tmp_path)
    cfg = _block_shuffled(path)
    host = dict(shard_index=1, shard_count=2, seed=5)
    runs = []
    for workers in (0, 1):
        it = make_pipeline({**cfg, "worker_count": workers}, None, processor, model_config, **host)
        runs.append([b["input_ids"] for b in it])
        it.close()
    assert len(runs[0]) == len(runs[1]) > 0
    for x, y in zip(*runs):
        np.testing.assert_array_equal(x, y)
    it = make_pipeline(cfg, None, processor, model_config, **host)
    [next(it) for _ in range(3)]
    state = it.get_state()
    it.close()
    resumed = make_pipeline(cfg, None, processor, model_config, **host)
    resumed.set_state(state)
    tail = [b["input_ids"] for b in resumed]
    resumed.close()
    assert len(tail) == len(runs[0]) - 3
    for x, y in zip(tail, runs[0][3:]):
        np.testing.assert_array_equal(x, y)
