"""Random-access sources: JSONL line index, JSON arrays, ArrayRecord files and a TFDS ArrayRecord builder."""

import json
import pickle

import numpy as np
import pytest

from lingshu_jax.data import DataConfig, make_pipeline, unpack_batch
from lingshu_jax.data.config import SourceConfig
from lingshu_jax.data.sources import (
    ArrayRecordSource,
    JsonlSource,
    JsonSource,
    open_source,
    scan_line_offsets,
)

from .helpers import text_only, vqa, write_png


def test_jsonl_index_skips_blank_lines_and_reports_file_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"a": 1}\n\n{"a": 2}\r\n\r\n{"a": 3}')  # blank lines, CRLF, no final newline
    starts, lengths, lines = scan_line_offsets(str(path))
    assert lines.tolist() == [1, 3, 5]
    src = JsonlSource([str(path)])
    assert len(src) == 3
    assert [json.loads(src[i]["data"])["a"] for i in (2, 0, 1)] == [3, 1, 2]  # random access
    assert src[1]["where"] == f"{path}:3"


def test_jsonl_multiple_files_pickle_and_index_cache(tmp_path):
    paths = []
    for f in range(3):
        p = tmp_path / f"{f}.jsonl"
        p.write_text("".join(json.dumps({"f": f, "i": i}) + "\n" for i in range(f + 2)))
        paths.append(str(p))
    src = JsonlSource(paths, index_cache_dir=str(tmp_path / "cache"))
    assert len(src) == 2 + 3 + 4
    _ = src[0]  # opens a handle; pickling must drop it
    clone = pickle.loads(pickle.dumps(src))
    assert json.loads(clone[6]["data"]) == {"f": 2, "i": 1}
    assert clone[6]["where"].endswith("2.jsonl:2")
    cached = JsonlSource(paths, index_cache_dir=str(tmp_path / "cache"))  # served from the cache
    assert [cached[i]["data"] for i in range(len(cached))] == [src[i]["data"] for i in range(len(src))]


def test_json_array_source(tmp_path):
    p = tmp_path / "a.json"
    p.write_text(json.dumps([text_only("q1"), text_only("q2")]))
    src = JsonSource([str(p)])
    assert len(src) == 2 and src[1]["where"] == f"{p}[1]"
    bad = tmp_path / "b.json"
    bad.write_text('[{"a": 1},\n{oops}]')
    with pytest.raises(ValueError, match=r"b\.json:2: invalid JSON"):
        JsonSource([str(bad)])


def test_missing_data_file_is_a_config_error(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        open_source(SourceConfig(name="x", paths=(str(tmp_path / "nope.jsonl"),)))


def test_array_record_source_feeds_the_pipeline(tmp_path, processor, model_config):
    from array_record.python.array_record_module import ArrayRecordWriter

    write_png(str(tmp_path / "im.png"), (56, 56))
    records = [vqa("im.png"), text_only()]
    path = str(tmp_path / "d.array_record")
    writer = ArrayRecordWriter(path, "group_size:1")
    for r in records:
        writer.write(json.dumps(r).encode())
    writer.close()
    src = ArrayRecordSource([path])
    assert len(src) == 2 and json.loads(src[1]["data"]) == records[1] and src[1]["where"] == f"{path}:1"
    cfg = DataConfig.from_dict(
        {
            "sources": [{"name": "ar", "path": path}],
            "seq_len": 128,
            "batch_size": 2,
            "patch_budget": 64,
            "shuffle": False,
        }
    )
    it = make_pipeline(cfg, None, processor, model_config)
    batch = next(it)
    assert it.counters["samples"] == 2 and len(unpack_batch(batch)) == 2


def _tfds_builder(data_dir):
    import io

    import tensorflow_datasets as tfds
    from PIL import Image

    class TinyMedVqa(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict(
                    {
                        "messages": tfds.features.Text(),
                        "images": tfds.features.Sequence(tfds.features.Image(encoding_format="png")),
                    }
                ),
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i in range(3):
                buf = io.BytesIO()
                Image.fromarray(np.full((56, 84, 3), 40 * i, np.uint8)).save(buf, "PNG")
                msgs = [
                    {"role": "user", "content": f"<image>What is {i}?"},
                    {"role": "assistant", "content": f"It is {i}."},
                ]
                yield i, {"messages": json.dumps(msgs), "images": [buf.getvalue()]}

    # tfds' code_path() needs the package `importlib_resources` for classes in a dotted module (this test
    # module); it is not a dependency here, and a one-part module name takes tfds' other path.
    TinyMedVqa.__module__ = "tiny_med_vqa_test"
    return TinyMedVqa(data_dir=data_dir, file_format="array_record")


def test_tfds_source(tmp_path, processor, model_config):
    builder = _tfds_builder(str(tmp_path))
    builder.download_and_prepare()
    cfg = DataConfig.from_dict(
        {
            "sources": [{"name": "t", "tfds_name": "tiny_med_vqa", "data_dir": str(tmp_path)}],
            "seq_len": 128,
            "batch_size": 3,
            "patch_budget": 256,
            "shuffle": False,
        }
    )
    src = open_source(cfg.sources[0])
    assert len(src) == 3 and src[0]["where"] == "tfds:tiny_med_vqa/train:0"
    it = make_pipeline(cfg, None, processor, model_config)
    batch = next(it)
    samples = unpack_batch(batch)
    assert it.counters["samples"] == 3 and len(samples) == 3
    # 56x84 -> grid (1, 4, 6): 24 patch rows, 6 image tokens per sample; one window, 64 stream rows.
    assert all((s["input_ids"] == model_config.image_token_id).sum() == 6 for s in samples)
    assert all(len(s["pixel_values"]) == 64 for s in samples)
    assert [int(np.abs(s["pixel_values"]).any(1).sum()) for s in samples] == [0, 24, 24]  # image 0 is black
