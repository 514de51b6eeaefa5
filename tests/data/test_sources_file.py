"""Data options from the command line: every DataConfig option is a key of the shipped SFT configs (so
`--config.data.<key>=...` parses), and a mixture file (JSON or YAML) replaces the sources, paths relative
to the file, unknown keys named."""

import json
import os
import subprocess
import sys

import ml_collections
import pytest

from lingshu_jax.data import DataConfig, make_pipeline
from lingshu_jax.data.config import read_sources_file

from .helpers import mixed_dataset, text_only, write_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED = [
    "configs/demo.py:stage=3",
    "configs/lingshu/stage1.py",
    "configs/lingshu/stage2.py",
    "configs/lingshu/stage3.py",
]


def _parse(config, *overrides):
    """The config as scripts/train.py parses it (lingshu_jax.cli, absl), in a subprocess."""
    code = (
        "import sys, json; from lingshu_jax import cli; "
        "sys.modules['__main__'].dump = lambda c, w: print('CONFIG=' + c.to_json()); "
        "cli.run_config_and_workdir('__main__:dump')"
    )
    cmd = [sys.executable, "-c", code, f"--config={config}", "--workdir=/unused", *overrides]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("CONFIG="))
    return ml_collections.ConfigDict(json.loads(line[len("CONFIG=") :]))


@pytest.mark.parametrize("config", SHIPPED)
def test_every_data_option_is_settable_from_the_command_line_on_each_shipped_config(config, tmp_path):
    mix = tmp_path / "mix.json"
    mix.write_text(json.dumps([{"name": "a", "path": "a.jsonl"}]))
    c = _parse(
        config,
        "--config.data.on_error=error",
        "--config.data.truncation=truncate",
        "--config.data.epochs=3",
        "--config.data.num_samples=7",
        f"--config.data.sources_file={mix}",
        "--config.data.max_segments_per_row=2",
        "--config.data.worker_count=1",
        "--config.data.on_error_overrides.missing_image=error",
        "--config.data.on_error_overrides.too_long=skip",
        "--config.data.parquet_cache_mb=64",
    )
    assert (c.data.on_error, c.data.truncation, c.data.epochs, c.data.num_samples) == (
        "error",
        "truncate",
        3,
        7,
    )
    assert c.data.sources_file == str(mix) and c.data.max_segments_per_row == 2
    d = DataConfig.from_dict(c.data)
    assert [s.name for s in d.sources] == ["a"] and d.sources[0].paths == (str(tmp_path / "a.jsonl"),)
    assert dict(d.on_error_overrides) == {"missing_image": "error", "too_long": "skip"}
    assert [d.error_policy()(k) for k in ("too_long", "corrupt_image")] == ["skip", "error"]
    assert d.parquet_cache_mb == 64


def test_sources_file_json_and_yaml_build_the_same_mixture(tmp_path, ops):
    path = mixed_dataset(str(tmp_path))
    write_jsonl(str(tmp_path / "text.jsonl"), [text_only() for _ in range(5)])
    mix = [
        {"name": "mixed", "path": "data.jsonl", "root": ".", "weight": 3, "format": "jsonl"},
        {"name": "text", "paths": ["text.jsonl"], "weight": 1},
    ]
    (tmp_path / "mix.json").write_text(json.dumps(mix))
    (tmp_path / "mix.yaml").write_text(
        "sources:\n"
        "  - {name: mixed, path: data.jsonl, root: ., weight: 3, format: jsonl}\n"
        "  - {name: text, paths: [text.jsonl], weight: 1}\n"
    )
    base = dict(sources=[], seq_len=256, batch_size=2, patch_budget=256, packing=True, epochs=1)
    a = DataConfig.from_dict({**base, "sources_file": str(tmp_path / "mix.json")})
    b = DataConfig.from_dict({**base, "sources_file": str(tmp_path / "mix.yaml")})
    assert a.sources == b.sources and a.sources[0].paths == (path,) and a.sources[0].weight == 3
    it = make_pipeline(a, ops=ops)
    batch = next(it)
    it.close()
    assert batch["input_ids"].shape == (2, 256)


def test_unknown_key_in_sources_file_is_an_error_naming_file_source_and_key(tmp_path):
    (tmp_path / "mix.json").write_text(json.dumps([{"name": "a", "path": "a.jsonl", "image_dir": "x"}]))
    with pytest.raises(ValueError, match=r"mix.json: source 0 \(a\): unknown key 'image_dir'"):
        read_sources_file(str(tmp_path / "mix.json"))
