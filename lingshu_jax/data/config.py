"""Data configuration: frozen dataclasses, built from a dict or an ml-collections ConfigDict.

Everything here is checked at construction: a bad option is a configuration error (ValueError naming the
key), never a silently skipped record.

Example (stage 3, packed)::

  DataConfig.from_dict({
      "sources": [{"name": "vqa", "path": "/data/vqa.jsonl", "root": "/data/images", "weight": 3},
                  {"name": "text", "path": "/data/text.jsonl", "weight": 1}],
      "seq_len": 8192, "batch_size": 1, "patch_budget": 16384, "packing": True, "epochs": 2})
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from collections.abc import Mapping
from typing import Any

from lingshu_jax.data import columnar, errors

KINDS = ("jsonl", "json", "array_record", "parquet", "arrow", "hf_disk", "tfds")


@dataclasses.dataclass(frozen=True)
class SourceConfig:
    """One data source. `paths` are files or globs (jsonl/json/array_record/parquet/arrow), or for `hf_disk`
    directories written by `datasets.save_to_disk` (a DatasetDict's: `split` picks one); tfds uses
    `tfds_name`. `kind` (alias `format` in a sources file) defaults from the extension (a save_to_disk
    directory is recognised by its state.json / dataset_dict.json).

    `root`: directory that image paths are relative to (default: the directory of the first file);
    a path that resolves outside it is a data error (`path_escape`). `weight`: mixing weight (None in all
    sources = concatenate + global shuffle; otherwise weighted mixing, missing weights = 1).
    """

    name: str
    paths: tuple[str, ...] = ()
    kind: str | None = None  # None: from the file extension
    root: str | None = None
    weight: float | None = None
    tfds_name: str | None = None
    data_dir: str | None = None
    split: str = "train"

    def __post_init__(self):
        kind = self.kind or _kind_from_paths(self.name, self.paths, self.tfds_name)
        object.__setattr__(self, "kind", kind)
        if kind not in KINDS:
            raise ValueError(f"data.sources[{self.name}].kind={kind!r}: expected one of {KINDS}")
        if kind == "tfds" and not self.tfds_name:
            raise ValueError(f"data.sources[{self.name}]: kind 'tfds' needs tfds_name")
        if kind != "tfds" and not self.paths:
            raise ValueError(f"data.sources[{self.name}]: no paths")
        if self.weight is not None and not self.weight > 0:
            raise ValueError(f"data.sources[{self.name}].weight={self.weight}: must be > 0")

    def files(self) -> list[str]:
        """The data files (globs expanded, sorted; a save_to_disk directory's Arrow files); ValueError if a
        path matches nothing."""
        out = []
        for pattern in self.paths:
            matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
            if self.kind == "hf_disk":
                for m in matches or [pattern]:
                    if not os.path.isdir(m):
                        raise ValueError(f"data.sources[{self.name}]: {m} is not a save_to_disk directory")
                    try:
                        out.extend(columnar.hf_disk_files(m, self.split))
                    except ValueError as e:
                        raise ValueError(f"data.sources[{self.name}]: {e}") from None
                continue
            missing = [m for m in matches if not os.path.isfile(m)]
            if not matches or missing:
                raise ValueError(
                    f"data.sources[{self.name}]: data file {missing[0] if missing else pattern} not found"
                )
            out.extend(matches)
        return out

    def image_root(self) -> str:
        root = self.root or (os.path.dirname(os.path.abspath(self.files()[0])) if self.paths else os.getcwd())
        if not os.path.isdir(root):
            raise ValueError(f"data.sources[{self.name}].root={root}: not a directory")
        return root


def _kind_from_paths(name, paths, tfds_name) -> str | None:
    if tfds_name:
        return "tfds"
    if paths and all(columnar.is_hf_disk(p) for p in paths):
        return "hf_disk"
    exts = {os.path.splitext(p)[1].lower() for p in paths}
    table = {
        ".jsonl": "jsonl",
        ".json": "json",
        ".array_record": "array_record",
        ".arrayrecord": "array_record",
        ".parquet": "parquet",
        ".arrow": "arrow",
    }
    kinds = {table.get(e) for e in exts}
    if len(kinds) != 1 or None in kinds:
        raise ValueError(f"data.sources[{name}]: cannot infer kind from extensions {sorted(exts)}; set kind")
    return kinds.pop()


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The whole input pipeline of one training stage.

    Shapes produced: rows [batch_size, seq_len]; vision rows padded to `patch_budget` (multiple of 4; 0 for
    a text-only pipeline). `packing`: several samples per row (stage 3) or one (`max_segments_per_row` caps
    the samples per row when packing). `pack_pool` batches are filled together: tighter packing, samples
    reordered within that window. `epochs=None` repeats forever; with weights, `num_samples` (default
    epochs * total records) is the length of the mixture. `pixel_dtype`: dtype of the batch's
    pixel_values; "uint8" ships the resized images' values (a quarter of the float32 bytes, between
    processes and to the device) with the processor's pixel_scale/pixel_offset, and the model normalises.
    `parquet_cache_mb`: decoded Parquet row groups kept per process. `parquet_shuffle_window` k >= 1: with
    `shuffle`, Parquet sources are shuffled block-locally (row groups in a shuffled order, rows shuffled
    within each k consecutive row groups; data/shuffle.py), so reads stay within a few decoded row groups,
    each host reading only its own span of row groups; 0: one global per-record shuffle. `video_fps` / `video_max_frames`: the
    rate of a video's frames and how many are kept (transforms.py).
    """

    sources: tuple[SourceConfig, ...]
    seq_len: int = 8192
    batch_size: int = 1
    patch_budget: int = 16384
    packing: bool = False
    max_segments_per_row: int | None = None
    pack_pool: int = 4  # batches filled at once (first fit across all their rows); 1 = strictly in order
    train_on: str = "assistant"  # assistant | all
    truncation: str = "drop"  # drop | truncate
    on_error: str = "skip"  # skip | error (data errors; configuration errors always raise)
    on_error_overrides: Mapping[str, str] = dataclasses.field(default_factory=dict)
    epochs: int | None = 1
    num_samples: int | None = None
    shuffle: bool = True
    worker_count: int = 0
    worker_buffer_size: int = 4  # groups each worker process keeps ready
    read_threads: int = 2  # threads per process running the per-sample transform (grain ReadOptions)
    read_buffer: int = 2  # groups each process prepares ahead (bounds memory: images are large)
    group: int = 8  # consecutive records transformed and shipped from a worker together (transport.py)
    # Shared memory each worker process may hold in reusable slabs for its groups (transport.py); a group
    # that no slab can take travels through grain's queue instead, as every group does with 0.
    worker_slab_mb: int = 1024
    parquet_cache_mb: int = 256  # decoded Parquet row groups kept per process (columnar.py)
    parquet_shuffle_window: int = 0  # k >= 1: shuffle row groups, rows within k of them (0: global shuffle)
    video_fps: float = 2.0  # frames per second of a video's frame folder / frame list (M-RoPE time ids)
    video_max_frames: int = 64  # frames kept per video (evenly spaced; the rate scales to match)
    pixel_dtype: str = "uint8"  # uint8 (normalised by the model, on the device) | float32 (on the host)
    # The vision stream as this many equal chunks (global count; each host builds its share), chunk c
    # holding only the images of its own rows: one per device of the stream's sharding, so no image
    # crosses a device (attention_impl="splash" attends per device and needs it; the trainer checks).
    vision_chunks: int = 1
    prefetch: int = 2  # batches prepared ahead by a thread in the main process (0 = none)
    sources_file: str | None = None  # JSON/YAML list of sources; replaces `sources` (read by from_dict)

    def __post_init__(self):
        if not self.sources:
            raise ValueError("data.sources: empty")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"data.sources: duplicate names {names}")
        checks = {
            "seq_len": self.seq_len > 1,
            "batch_size": self.batch_size >= 1,
            "patch_budget": self.patch_budget >= 0 and self.patch_budget % 4 == 0,
            "train_on": self.train_on in ("assistant", "all"),
            "truncation": self.truncation in ("drop", "truncate"),
            "epochs": self.epochs is None or self.epochs >= 1,
            "num_samples": self.num_samples is None or self.num_samples >= 1,
            "max_segments_per_row": self.max_segments_per_row is None or self.max_segments_per_row >= 1,
            "worker_count": self.worker_count >= 0,
            "worker_buffer_size": self.worker_buffer_size >= 1,
            "read_threads": self.read_threads >= 1,
            "read_buffer": self.read_buffer >= 1,
            "group": self.group >= 1,
            "worker_slab_mb": self.worker_slab_mb >= 0,
            "pixel_dtype": self.pixel_dtype in ("uint8", "float32"),
            "prefetch": self.prefetch >= 0,
            "pack_pool": self.pack_pool >= 1,
            "parquet_cache_mb": self.parquet_cache_mb >= 1,
            "parquet_shuffle_window": self.parquet_shuffle_window >= 0,
            "video_fps": self.video_fps > 0,
            "video_max_frames": self.video_max_frames >= 1,
            "vision_chunks": self.vision_chunks >= 1,
        }
        for key, ok in checks.items():
            if not ok:
                raise ValueError(f"data.{key}={getattr(self, key)!r} is invalid (see DataConfig docstring)")
        self.error_policy()  # validates on_error / overrides

    @property
    def segments_per_row(self) -> int:
        if not self.packing:
            return 1
        return self.max_segments_per_row or self.seq_len

    def error_policy(self) -> errors.ErrorPolicy:
        return errors.ErrorPolicy(self.on_error, self.on_error_overrides)

    def replace(self, **kw) -> "DataConfig":
        return dataclasses.replace(self, **kw)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | Any) -> "DataConfig":
        """From a dict or ConfigDict; sources as dicts; `path` (one) is accepted for `paths`."""
        d = dict(d.to_dict() if hasattr(d, "to_dict") else d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if "pixel_transport" in unknown:
            raise ValueError("data.pixel_transport is now data.pixel_dtype (the dtype of batch pixel_values)")
        if unknown:
            raise ValueError(f"data: unknown keys {sorted(unknown)}")
        if d.get("sources_file"):
            d["sources"] = read_sources_file(d["sources_file"])
        d["sources"] = tuple(_source(s) for s in d.get("sources", ()))
        # Unset classes are None placeholders in configs built by data_section.
        overrides = dict(d.get("on_error_overrides") or {})
        d["on_error_overrides"] = {k: v for k, v in overrides.items() if v is not None}
        return cls(**d)


_FILE_SOURCE_KEYS = (
    *("name", "path", "paths", "root", "weight", "kind", "format", "tfds_name", "data_dir", "split"),
)


def read_sources_file(path: str) -> tuple[SourceConfig, ...]:
    """A mixture file (JSON, or YAML by extension): a list of sources, or {"sources": [...]}. Each source:
    name, path(s) (files, globs or save_to_disk directories), root (image root), weight, kind or format
    (jsonl | json | array_record | parquet | arrow | hf_disk | tfds), tfds_name/data_dir/split. Relative paths and roots are relative to the file's directory; an
    unknown key is an error naming the file, the source and the key."""
    if not os.path.isfile(path):
        raise ValueError(f"data.sources_file={path}: not found")
    with open(path, encoding="utf-8") as f:
        if path.lower().endswith((".yaml", ".yml")):
            import yaml

            content = yaml.safe_load(f)
        else:
            try:
                content = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"data.sources_file={path}:{e.lineno}: invalid JSON ({e.msg})") from None
    if isinstance(content, dict) and set(content) == {"sources"}:
        content = content["sources"]
    if not isinstance(content, list) or not content:
        raise ValueError(f"data.sources_file={path}: expected a non-empty list of sources (or sources: [..])")
    base = os.path.dirname(os.path.abspath(path))
    out = []
    for i, s in enumerate(content):
        if not isinstance(s, dict):
            raise ValueError(f"data.sources_file={path}: source {i} is a {type(s).__name__}, not a mapping")
        unknown = sorted(set(s) - set(_FILE_SOURCE_KEYS))
        if unknown:
            raise ValueError(
                f"data.sources_file={path}: source {i} ({s.get('name', '?')}): unknown key {unknown[0]!r} "
                f"(known: {', '.join(_FILE_SOURCE_KEYS)})"
            )
        s = dict(s)
        if "format" in s:
            s["kind"] = s.pop("format")
        s.setdefault("name", f"source{i}")
        paths = s.pop("paths", None) or ([s.pop("path")] if "path" in s else [])
        s["paths"] = tuple(os.path.join(base, p) for p in ([paths] if isinstance(paths, str) else paths))
        if s.get("root"):
            s["root"] = os.path.join(base, s["root"])
        out.append(_source(s))
    return tuple(out)


def data_section(values: Mapping[str, Any]):
    """ConfigDict of `config.data` with every DataConfig option present (defaults where `values` has none), so
    each is settable from the command line (`--config.data.on_error=error`,
    `--config.data.on_error_overrides.missing_image=error`); None defaults are typed placeholders. `sources` stays a list (give a mixture on the command line with `sources_file`)."""
    import typing

    import ml_collections

    hints = typing.get_type_hints(DataConfig)
    out = {}
    for f in dataclasses.fields(DataConfig):
        if f.name == "sources":
            continue
        if f.name in values:
            value = values[f.name]
        elif f.default is not dataclasses.MISSING:
            value = f.default
        else:
            value = f.default_factory()
        if value is None:
            kind = next(t for t in typing.get_args(hints[f.name]) if t is not type(None))
            value = ml_collections.config_dict.placeholder(kind)
        if (
            f.name == "on_error_overrides"
        ):  # one key per data-error class: --config.data.on_error_overrides.X=
            errors.ErrorPolicy("skip", value)  # an unknown class is an error naming it
            value = {k: value.get(k, ml_collections.config_dict.placeholder(str)) for k in errors.DATA_ERRORS}
        out[f.name] = value
    unknown = set(values) - set(out) - {"sources"}
    if unknown:
        raise ValueError(f"data: unknown keys {sorted(unknown)}")
    c = ml_collections.ConfigDict(out)
    c.sources = list(values.get("sources", []))
    return c


def _source(s) -> SourceConfig:
    if isinstance(s, SourceConfig):
        return s
    s = dict(s.to_dict() if hasattr(s, "to_dict") else s)
    if "path" in s:
        s["paths"] = (s.pop("path"),)
    if isinstance(s.get("paths"), str):
        s["paths"] = (s["paths"],)
    s["paths"] = tuple(s.get("paths") or ())
    known = {f.name for f in dataclasses.fields(SourceConfig)}
    unknown = set(s) - known
    if unknown:
        raise ValueError(f"data.sources[{s.get('name')}]: unknown keys {sorted(unknown)}")
    return SourceConfig(**s)
