"""Parquet / Arrow / `datasets.save_to_disk` sources: the same conversations as JSONL give the same batches,
reads go one row group at a time, hosts split the rows, videos held as bytes decode like video files, bad rows
follow the bad-record policy, and files that are not Parquet / Arrow or hold no conversation are
configuration errors naming the file."""

import json
import os
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lingshu_jax.data import DataConfig, make_pipeline
from lingshu_jax.data.columnar import ArrowSource, ParquetSource, hf_disk_files
from lingshu_jax.data.config import SourceConfig, read_sources_file
from lingshu_jax.data.sources import open_source

from .helpers import text_only, write_jsonl, write_png

# Hugging Face `datasets` feature types as Arrow types: Image() is struct {bytes, path}.
HF_IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
PART = pa.struct([("type", pa.string()), ("text", pa.string()), ("image", pa.string())])
TRL_MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.list_(PART))]))


def _records(root, n=9):
    """n conversations over three layouts: TRL/HF typed parts with an `images` column (image bytes),
    ShareGPT with image paths, text-only LLaMA-Factory. -> (rows for Arrow, the same records as JSONL)."""
    rows, jsonl = [], []
    for i in range(n):
        path = write_png(os.path.join(root, "img", f"{i}.png"), (56 + 28 * (i % 3), 56), seed=i)
        if i % 3 == 0:
            with open(path, "rb") as f:
                data = f.read()
            user = [
                {"type": "image", "text": None, "image": None},
                {"type": "text", "text": f"q{i}?", "image": None},
            ]
            answer = [{"type": "text", "text": f"answer {i}", "image": None}]
            messages = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
            rows.append({"messages": messages, "images": [{"bytes": data, "path": None}]})
            jsonl.append(
                {
                    "messages": [
                        {
                            "role": "user",
                            "content": [
                                {"type": "image", "image": f"img/{i}.png"},
                                {"type": "text", "text": f"q{i}?"},
                            ],
                        },
                        {"role": "assistant", "content": [{"type": "text", "text": f"answer {i}"}]},
                    ]
                }
            )
        elif i % 3 == 1:
            conv = [
                {"from": "human", "value": f"<image>Describe {i}."},
                {"from": "gpt", "value": f"caption {i}"},
            ]
            rows.append({"conversations": conv, "images": [{"bytes": None, "path": f"img/{i}.png"}]})
            jsonl.append({"conversations": conv, "images": [f"img/{i}.png"]})
        else:
            rows.append({"text": text_only(f"Define {i}.", f"def {i}")["messages"]})
            jsonl.append(text_only(f"Define {i}.", f"def {i}"))
    return rows, jsonl


def _split_tables(rows):
    """One table per layout (a Parquet/Arrow file has one schema)."""
    typed = [r for r in rows if "messages" in r]
    share = [r for r in rows if "conversations" in r]
    texts = [{"messages": r["text"]} for r in rows if "text" in r]
    return (
        pa.Table.from_pylist(
            typed, schema=pa.schema([("messages", TRL_MESSAGES), ("images", pa.list_(HF_IMAGE))])
        ),
        pa.Table.from_pylist(
            share,
            schema=pa.schema(
                [
                    ("conversations", pa.list_(pa.struct([("from", pa.string()), ("value", pa.string())]))),
                    ("images", pa.list_(HF_IMAGE)),
                ]
            ),
        ),
        pa.Table.from_pylist(texts),
    )


def _batches(cfg, processor, model_config, **kw):
    it = make_pipeline(cfg, None, processor, model_config, **kw)
    out = list(it)
    it.close()
    return out, it.counters


def _same(a, b):
    assert len(a) == len(b) and len(a) > 0
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(np.asarray(x[k]), np.asarray(y[k]), err_msg=k)


def _cfg(sources, **kw):
    base = dict(sources=sources, seq_len=128, batch_size=2, patch_budget=256, packing=True, shuffle=False)
    base.update(kw)
    return DataConfig.from_dict(base)


def test_parquet_files_give_the_same_batches_as_the_same_records_in_jsonl(tmp_path, processor, model_config):
    rows, jsonl = _records(str(tmp_path))
    tables = _split_tables(rows)
    paths = []
    for k, t in enumerate(tables):
        paths.append(str(tmp_path / f"part{k}.parquet"))
        pq.write_table(t, paths[-1], row_group_size=2)
    order = [r for k in range(3) for r in jsonl if (jsonl.index(r) % 3) == k]  # the files' row order
    ref = write_jsonl(tmp_path / "ref.jsonl", order)
    got, counters = _batches(_cfg([{"name": "pq", "paths": paths}]), processor, model_config)
    want, _ = _batches(_cfg([{"name": "pq", "path": ref}]), processor, model_config)
    _same(got, want)
    assert counters["samples"] == 9 and not any(k.startswith("skipped") for k in counters)
    assert SourceConfig(name="x", paths=(paths[0],)).kind == "parquet"


def test_parquet_reads_one_row_group_per_record_group_and_pickles_without_data(tmp_path):
    path = str(tmp_path / "t.parquet")
    pq.write_table(
        pa.Table.from_pylist(
            [{"messages": text_only(f"q{i}")["messages"], "system": str(i)} for i in range(50)]
        ),
        path,
        row_group_size=5,
    )
    src = ParquetSource([path])
    assert len(src) == 50 and src.cache.loads == 0  # the footer only
    assert src[37]["data"]["system"] == "37" and src[37]["where"] == f"{path}[row 37]"
    assert src[36]["data"]["system"] == "36" and src.cache.loads == 1  # rows 35..39: one row group decoded
    assert src[3]["data"]["system"] == "3" and src.cache.loads == 2
    clone = pickle.loads(pickle.dumps(src))
    assert len(pickle.dumps(src)) < 2000 and clone.cache.loads == 0  # no decoded data travels to workers
    assert [clone[i]["data"]["system"] for i in (49, 0, 25)] == ["49", "0", "25"]
    meta = pq.ParquetFile(path).metadata
    group_bytes = max(meta.row_group(g).total_byte_size for g in range(meta.num_row_groups))  # ~400
    small = ParquetSource([path], cache_bytes=group_bytes + 100)  # room for one decoded row group only
    for i in (0, 10, 0):
        small[i]
    assert small.cache.loads == 3
    with pytest.raises(
        ValueError, match=r"t\.parquet: row group 2 holds 0 MiB uncompressed, more than the decoded"
    ):
        ParquetSource([path], cache_bytes=group_bytes - 1)


def test_parquet_hosts_read_disjoint_shares_that_cover_the_data(tmp_path, processor, model_config):
    path = str(tmp_path / "t.parquet")
    pq.write_table(
        pa.Table.from_pylist([text_only(f"q{i}", f"a{i}") for i in range(10)]), path, row_group_size=3
    )
    cfg = _cfg([{"name": "pq", "path": path}], batch_size=1, packing=False, shuffle=True)
    seen = []
    for host in range(2):
        batches, counters = _batches(cfg, processor, model_config, shard_index=host, shard_count=2)
        assert counters["samples"] == 5
        seen += [tuple(b["input_ids"][0][b["input_ids"][0] != 0]) for b in batches]
    assert len(set(seen)) == 10


def test_bad_parquet_rows_are_counted_under_skip_and_named_by_row_under_error(
    tmp_path, processor, model_config
):
    write_png(str(tmp_path / "ok.png"))
    good = {
        "conversations": [{"from": "human", "value": "<image>hi"}, {"from": "gpt", "value": "yes"}],
        "images": ["ok.png"],
    }
    rows = [
        good,
        {**good, "images": ["missing.png"]},
        good,
        {**good, "conversations": [{"from": "robot", "value": "x"}]},
    ]
    path = str(tmp_path / "bad.parquet")
    pq.write_table(pa.Table.from_pylist(rows), path)
    _, counters = _batches(_cfg([{"name": "pq", "path": path}]), processor, model_config)
    assert (
        counters["samples"] == 2
        and counters["skipped/missing_image"] == 1
        and counters["skipped/unknown_role"] == 1
    )
    with pytest.raises(
        ValueError, match=r"bad\.parquet\[row 1\]: image file 'missing.png' not found.*on_error='error'"
    ):
        _batches(_cfg([{"name": "pq", "path": path}], on_error="error"), processor, model_config)


def test_a_corrupt_row_group_is_a_counted_bad_record(tmp_path, processor, model_config):
    path = str(tmp_path / "c.parquet")
    rows = [text_only(f"question number {i} " * 20, f"answer {i} " * 20) for i in range(4)]
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=2, compression="snappy")
    meta = pq.ParquetFile(path).metadata
    column = meta.row_group(1).column(0)
    start = column.dictionary_page_offset or column.data_page_offset
    raw = bytearray(open(path, "rb").read())
    raw[start + 20 : start + column.total_compressed_size - 20] = b"\xff" * (
        column.total_compressed_size - 40
    )
    open(path, "wb").write(bytes(raw))
    _, counters = _batches(_cfg([{"name": "pq", "path": path}], seq_len=2048), processor, model_config)
    assert counters["samples"] == 2 and counters["skipped/bad_record"] == 2
    with pytest.raises(ValueError, match=r"c\.parquet\[row 2\]: the source failed to decode it: row group 1"):
        _batches(
            _cfg([{"name": "pq", "path": path}], seq_len=2048, on_error="error"), processor, model_config
        )


def test_non_parquet_and_conversationless_files_are_configuration_errors(tmp_path):
    fake = tmp_path / "fake.parquet"
    fake.write_text("not parquet")
    with pytest.raises(ValueError, match=r"fake\.parquet: not a readable Parquet file"):
        open_source(SourceConfig(name="x", paths=(str(fake),)))
    table = tmp_path / "table.parquet"
    pq.write_table(pa.Table.from_pylist([{"question": "q", "answer": "a"}]), str(table))
    with pytest.raises(
        ValueError,
        match=r"table\.parquet: no 'messages' or 'conversations' column \(columns: \['question', 'answer'\]\)",
    ):
        open_source(SourceConfig(name="x", paths=(str(table),)))
    arrow = tmp_path / "x.arrow"
    arrow.write_text("not arrow")
    with pytest.raises(ValueError, match=r"x\.arrow: not a readable Arrow IPC file"):
        open_source(SourceConfig(name="x", paths=(str(arrow),)))


def _save_to_disk(directory, table, shards=2):
    """The layout `datasets.Dataset.save_to_disk` writes (datasets is not a dependency): Arrow IPC *stream*
    files data-0000k-of-0000n.arrow, state.json listing them under _data_files (plus the fingerprint and
    format keys datasets writes), dataset_info.json with the features."""
    os.makedirs(directory)
    per = -(-len(table) // shards)
    names = []
    for k in range(shards):
        names.append(f"data-{k:05d}-of-{shards:05d}.arrow")
        with pa.OSFile(os.path.join(directory, names[-1]), "wb") as sink:
            with pa.ipc.new_stream(sink, table.schema) as writer:
                for batch in table.slice(k * per, per).to_batches(max_chunksize=2):
                    writer.write_batch(batch)
    state = {
        "_data_files": [{"filename": n} for n in names],
        "_fingerprint": "0123456789abcdef",
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": "train",
    }
    with open(os.path.join(directory, "state.json"), "w") as f:
        json.dump(state, f)
    with open(os.path.join(directory, "dataset_info.json"), "w") as f:
        json.dump({"features": {"messages": {"_type": "Sequence"}, "images": {"_type": "Sequence"}}}, f)


def test_save_to_disk_directory_and_dataset_dict_match_jsonl(tmp_path, processor, model_config):
    rows, jsonl = _records(str(tmp_path), n=6)
    typed = _split_tables(rows)[0]  # the typed-parts rows with image bytes: 0, 3
    _save_to_disk(str(tmp_path / "ds"), typed, shards=2)
    ref = write_jsonl(tmp_path / "ref.jsonl", [jsonl[0], jsonl[3]])
    got, counters = _batches(_cfg([{"name": "hf", "path": str(tmp_path / "ds")}]), processor, model_config)
    want, _ = _batches(_cfg([{"name": "hf", "path": ref}]), processor, model_config)
    _same(got, want)
    assert SourceConfig(name="x", paths=(str(tmp_path / "ds"),)).kind == "hf_disk"
    src = ArrowSource(hf_disk_files(str(tmp_path / "ds"), None))
    assert src[1]["where"].endswith("data-00001-of-00002.arrow[row 0]")
    # A DatasetDict: dataset_dict.json lists the splits, one save_to_disk directory each.
    os.makedirs(tmp_path / "dd")
    (tmp_path / "dd" / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    _save_to_disk(str(tmp_path / "dd" / "train"), typed, shards=1)
    _save_to_disk(str(tmp_path / "dd" / "test"), typed.slice(0, 1), shards=1)
    test_split = _cfg([{"name": "hf", "path": str(tmp_path / "dd"), "split": "test"}])
    assert _batches(test_split, processor, model_config)[1]["samples"] == 1
    with pytest.raises(ValueError, match=r"dd: a DatasetDict with splits \['train', 'test'\]; split='val'"):
        open_source(SourceConfig(name="x", paths=(str(tmp_path / "dd"),), split="val"))


def test_arrow_source_maps_the_file_instead_of_loading_it(tmp_path):
    table = pa.Table.from_pylist([{"messages": text_only("q" * 1000)["messages"]} for _ in range(400)])
    path = str(tmp_path / "big.arrow")
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=50)
    before = pa.total_allocated_bytes()
    src = ArrowSource([path])
    rows = [src[i]["data"] for i in (399, 0, 200)]
    assert rows[0]["messages"][0]["content"] == "q" * 1000
    assert pa.total_allocated_bytes() - before < table.nbytes // 20  # zero-copy slices of the mapped file


def test_sources_file_with_a_parquet_source(tmp_path, processor, model_config):
    path = tmp_path / "d" / "t.parquet"
    os.makedirs(path.parent)
    pq.write_table(pa.Table.from_pylist([text_only(f"q{i}") for i in range(3)]), str(path))
    mix = tmp_path / "mix.json"
    mix.write_text(json.dumps([{"name": "p", "path": "d/*.parquet", "format": "parquet", "weight": 2}]))
    (source,) = read_sources_file(str(mix))
    assert source.kind == "parquet" and source.image_root() == str(path.parent)
    cfg = _cfg([], sources_file=str(mix), batch_size=1, packing=False)
    assert _batches(cfg, processor, model_config)[1]["samples"] == 3


def test_parquet_source_reopens_in_grain_worker_processes(tmp_path, processor, model_config):
    rows, _ = _records(str(tmp_path))
    path = str(tmp_path / "typed.parquet")
    pq.write_table(_split_tables(rows)[0], path, row_group_size=1)
    runs = [
        _batches(_cfg([{"name": "pq", "path": path}], worker_count=w), processor, model_config)
        for w in (0, 1)
    ]
    _same(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1] and runs[1][1]["samples"] == 3


def test_parquet_reads_from_several_threads_at_once(tmp_path):
    import concurrent.futures

    path = str(tmp_path / "t.parquet")
    rows = [{"messages": text_only(f"q{i}")["messages"], "system": str(i)} for i in range(400)]
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=7)
    src = ParquetSource([path], cache_bytes=2 << 10)  # a few row groups: threads decode concurrently
    order = np.random.default_rng(0).permutation(400)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda i: int(src[int(i)]["data"]["system"]), order))
    assert got == order.tolist() and src.cache.loads > 57  # (57 row groups: some decoded again)


def test_columns_outside_the_record_are_never_decoded(tmp_path):
    rows = [{**text_only(f"q{i}"), "id": i, "scan": os.urandom(1 << 16)} for i in range(8)]  # 64 KiB each
    table = pa.Table.from_pylist(rows)
    path = str(tmp_path / "t.parquet")
    pq.write_table(table, path, row_group_size=8, compression="none")
    src = ParquetSource([path], cache_bytes=64 << 10)  # the record columns fit, the scans would not
    assert src[5]["data"] == text_only("q5") and src.cache.nbytes < 4096
    arrow = str(tmp_path / "t.arrow")
    with pa.OSFile(arrow, "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    assert ArrowSource([arrow])[5]["data"] == text_only("q5")


HF_VIDEO = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # datasets' Video() as stored


@pytest.fixture(scope="module")
def video_processor(processor):
    """The tiny tokenizer with small-frame image and video processors (56x56 .. 112x112 pixels)."""
    from lingshu_jax.processing.image import VideoProcessor
    from lingshu_jax.processing.processor import Processor

    small = dict(min_pixels=56 * 56, max_pixels=112 * 112)
    return Processor(processor.tokenizer, processor.image_processor, video_processor=VideoProcessor(**small))


def _video_rows(video):
    conv = [{"from": "human", "value": "<video>What moves?"}, {"from": "gpt", "value": "The left lung base."}]
    return {"conversations": conv, "videos": [video]}


def _video_cfg(sources, **kw):
    return _cfg(sources, seq_len=256, video_fps=3.0, video_max_frames=4, **kw)


def test_parquet_videos_as_bytes_give_the_same_batch_as_the_video_file(
    tmp_path, video_processor, model_config
):
    from tests.processing.helpers import write_video

    data = open(write_video(tmp_path / "clip.mp4", n=12, rate=6, size=(56, 84)), "rb").read()
    want, _ = _batches(
        _video_cfg([{"name": "j", "path": write_jsonl(tmp_path / "d.jsonl", [_video_rows("clip.mp4")])}]),
        video_processor,
        model_config,
    )
    struct = pa.Table.from_pylist(
        [_video_rows({"bytes": data, "path": None})],
        schema=pa.schema(
            [
                ("conversations", pa.list_(pa.struct([("from", pa.string()), ("value", pa.string())]))),
                ("videos", pa.list_(HF_VIDEO)),
            ]
        ),
    )
    pq.write_table(struct, str(tmp_path / "struct.parquet"))
    pq.write_table(pa.Table.from_pylist([_video_rows(data)]), str(tmp_path / "raw.parquet"))
    for name in ("struct", "raw"):
        got, counters = _batches(
            _video_cfg([{"name": "p", "path": str(tmp_path / f"{name}.parquet")}]),
            video_processor,
            model_config,
        )
        _same(got, want)
        assert counters["samples"] == 1
    assert (want[0]["input_ids"] == model_config.video_token_id).sum() == 12  # 2 temporal x 2x3 merged
    assert (want[0]["pixel_values"].any(axis=1)).sum() == 48  # 2 x 4 x 6 patch rows: 4 frames of 56x84


def test_a_corrupt_video_in_a_parquet_column_is_counted_and_named_by_row(
    tmp_path, video_processor, model_config
):
    from tests.processing.helpers import write_video

    data = open(write_video(tmp_path / "clip.mp4", n=12, rate=6, size=(56, 84)), "rb").read()
    rows = [
        _video_rows(data),
        _video_rows(b"\x00" * 64),
        _video_rows(data[: len(data) // 2]),
        _video_rows(data),
    ]
    path = str(tmp_path / "v.parquet")
    pq.write_table(pa.Table.from_pylist(rows), path)
    _, counters = _batches(_video_cfg([{"name": "p", "path": path}]), video_processor, model_config)
    assert counters["samples"] == 2 and counters["skipped/corrupt_image"] == 2
    with pytest.raises(ValueError, match=r"v\.parquet\[row 1\]: video file '<64 bytes>': InvalidDataError"):
        _batches(_video_cfg([{"name": "p", "path": path}], on_error="error"), video_processor, model_config)
    pq.write_table(pa.Table.from_pylist([rows[0], rows[2]]), path)
    with pytest.raises(ValueError, match=r"v\.parquet\[row 1\]: video file '<12\d+ bytes>': InvalidData"):
        _batches(_video_cfg([{"name": "p", "path": path}], on_error="error"), video_processor, model_config)
