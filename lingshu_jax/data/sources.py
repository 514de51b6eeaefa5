"""Random-access data sources (grain's `RandomAccessDataSource` protocol: `__len__`, `__getitem__`).

Every source returns *raw records* ``{"data": bytes | dict, "where": "file:line"}``: parsing and every
per-record check happen later, in the worker transform, so a malformed line becomes a counted data error
(reported as file:line) instead of an exception inside the source.

- `JsonlSource`: JSON Lines; one pass at construction records the byte offset of every non-empty line
  (numpy, 12 bytes per line, optionally cached on disk), then lines are read lazily with seek.
- `JsonSource`: one JSON array (or {"data": [...]}) per file, loaded whole; where = "file[index]".
- `ArrayRecordSource`: ArrayRecord files whose records are JSON bytes (grain's ArrayRecordDataSource).
- `TfdsSource`: `tfds.data_source(name, data_dir=, split=)`; records are feature dicts.
- Parquet, Arrow IPC and `datasets.save_to_disk` directories: columnar.py (records are column dicts).
Sources pickle small (files reopen lazily in each grain worker) and are safe to read from several
threads (grain's `to_iter_dataset` reads with a thread pool).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence

import numpy as np

from lingshu_jax.data import columnar
from lingshu_jax.data.config import SourceConfig

_CHUNK = 1 << 24


def scan_line_offsets(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Byte (start, length) and 1-based line number of every non-blank line of `path`.

    Returns starts int64 [n], lengths int32 [n], line_numbers int32 [n]. Blank means empty after removing
    the line terminator (a whitespace-only line is kept and later reported as malformed JSON).
    """
    starts, ends = [], []
    offset, line_start = 0, 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            nl = np.flatnonzero(np.frombuffer(chunk, np.uint8) == 10) + offset
            if len(nl):
                starts.append(np.concatenate([[line_start], nl[:-1] + 1]))
                ends.append(nl)
                line_start = int(nl[-1]) + 1
            offset += len(chunk)
    if line_start < offset:  # last line without a newline
        starts.append(np.asarray([line_start]))
        ends.append(np.asarray([offset]))
    starts = np.concatenate(starts).astype(np.int64) if starts else np.zeros(0, np.int64)
    ends = np.concatenate(ends).astype(np.int64) if ends else np.zeros(0, np.int64)
    lengths = ends - starts
    line_numbers = np.arange(1, len(starts) + 1, dtype=np.int32)
    keep = lengths > 0
    # "\r\n" endings: a line holding only "\r" is blank too; we check those few lines by reading them.
    one = np.flatnonzero(lengths == 1)
    if len(one):
        with open(path, "rb") as f:
            for i in one:
                f.seek(int(starts[i]))
                keep[i] = f.read(1) != b"\r"
    return starts[keep], lengths[keep].astype(np.int32), line_numbers[keep]


def _cached_scan(path: str, cache_dir: str | None):
    if not cache_dir:
        return scan_line_offsets(path)
    st = os.stat(path)
    key = hashlib.sha1(f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    cache = os.path.join(cache_dir, f"{os.path.basename(path)}.{key}.lines.npz")
    if os.path.isfile(cache):
        z = np.load(cache)
        return z["starts"], z["lengths"], z["lines"]
    out = scan_line_offsets(path)
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{cache}.{os.getpid()}.tmp.npz"
    np.savez(tmp, starts=out[0], lengths=out[1], lines=out[2])
    os.replace(tmp, cache)
    return out


class _MultiFile:
    """Global index -> (file index, local index) over files of known lengths."""

    def __init__(self, lengths: Sequence[int]):
        self._ends = np.cumsum(np.asarray(lengths, dtype=np.int64))

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def locate(self, index: int) -> tuple[int, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"record {index} out of range [0, {len(self)})")
        f = int(np.searchsorted(self._ends, index, side="right"))
        return f, index - (int(self._ends[f - 1]) if f else 0)


class JsonlSource:
    """JSON Lines files; record i is the i-th non-blank line, read lazily."""

    def __init__(self, paths: Sequence[str], index_cache_dir: str | None = None):
        self._paths = list(paths)
        scans = [_cached_scan(p, index_cache_dir) for p in self._paths]
        self._starts = [s[0] for s in scans]
        self._lengths = [s[1] for s in scans]
        self._lines = [s[2] for s in scans]
        self._index = _MultiFile([len(s[0]) for s in scans])
        self._fds: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> dict:
        f, i = self._index.locate(int(index))
        fd = self._fds.get(f)
        if fd is None:
            fd = self._fds[f] = os.open(self._paths[f], os.O_RDONLY)
        # pread: positional and thread-safe (grain reads with several threads per process).
        data = os.pread(fd, int(self._lengths[f][i]), int(self._starts[f][i]))
        return {"data": data, "where": f"{self._paths[f]}:{int(self._lines[f][i])}"}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_fds"] = {}
        return state

    def __del__(self, _close=os.close):
        for fd in getattr(self, "_fds", {}).values():
            try:
                _close(fd)
            except OSError:
                pass

    def __repr__(self) -> str:
        return f"JsonlSource({len(self._paths)} files, {len(self)} records)"


class JsonSource:
    """JSON files holding a list of records (or {"data": [...]}) loaded whole."""

    def __init__(self, paths: Sequence[str]):
        self._records, self._where = [], []
        for path in paths:
            with open(path, "rb") as f:
                raw = f.read()
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError as e:
                line = raw[: e.start].count(b"\n") + 1
                raise ValueError(
                    f"{path}:{line}: not UTF-8 (byte {e.start}: {raw[e.start : e.start + 1]!r}); "
                    "a JSON source must be UTF-8 text. A whole-file source cannot be read, so "
                    "data.on_error does not apply (re-encode it, e.g. iconv -f latin1 -t utf-8)"
                ) from None
            try:
                content = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"{path}:{e.lineno}: invalid JSON ({e.msg}); a JSON source must be one JSON "
                    "array (use .jsonl for one record per line)"
                ) from None
            if isinstance(content, dict) and isinstance(content.get("data"), list):
                content = content["data"]
            if not isinstance(content, list):
                raise ValueError(f"{path}: expected a JSON array of records, got {type(content).__name__}")
            self._records.extend(content)
            self._where.extend(f"{path}[{i}]" for i in range(len(content)))

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> dict:
        return {"data": self._records[index], "where": self._where[index]}


class ArrayRecordSource:
    """ArrayRecord files of JSON-encoded records (grain's ArrayRecordDataSource per file)."""

    def __init__(self, paths: Sequence[str]):
        import grain

        self._paths = list(paths)
        self._sources = [grain.sources.ArrayRecordDataSource([p]) for p in self._paths]
        self._index = _MultiFile([len(s) for s in self._sources])

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> dict:
        f, i = self._index.locate(int(index))
        return {"data": self._sources[f][i], "where": f"{self._paths[f]}:{i}"}


class TfdsSource:
    """A prepared TFDS dataset read through `tfds.data_source` (ArrayRecord format, no TensorFlow).

    Records are feature dicts; bytes features holding JSON conversations ("messages", "conversations") are
    parsed by the format layer. An exception while TFDS decodes a record (e.g. a corrupt image) is returned
    as {"exception": ...} and classified by the transform instead of killing the pipeline.
    """

    def __init__(self, name: str, data_dir: str | None, split: str):
        self._name, self._data_dir, self._split = name, data_dir, split
        self._source = None
        try:
            self._len = len(self._open())
        except Exception as e:  # tfds raises many types for a missing / unprepared dataset
            raise ValueError(
                f"tfds dataset {name!r} (data_dir={data_dir}, split={split}) cannot be opened: {e}"
            ) from e

    def _open(self):
        if self._source is None:
            import tensorflow_datasets as tfds

            self._source = tfds.data_source(self._name, data_dir=self._data_dir, split=self._split)
        return self._source

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> dict:
        where = f"tfds:{self._name}/{self._split}:{int(index)}"
        try:
            return {"data": dict(self._open()[int(index)]), "where": where}
        except Exception as e:  # noqa: BLE001 -- classified downstream as a data error
            return {"exception": f"{type(e).__name__}: {e}", "where": where}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_source"] = None
        return state


def open_source(cfg: SourceConfig, index_cache_dir: str | None = None, parquet_cache_mb: int = 256):
    """The raw-record source for one SourceConfig (configuration errors raise ValueError)."""
    if cfg.kind == "tfds":
        return TfdsSource(cfg.tfds_name, cfg.data_dir, cfg.split)
    files = cfg.files()
    if cfg.kind == "parquet":
        return columnar.ParquetSource(files, cache_bytes=parquet_cache_mb << 20)
    if cfg.kind in ("arrow", "hf_disk"):
        return columnar.ArrowSource(files)
    if cfg.kind == "jsonl":
        return JsonlSource(files, index_cache_dir)
    if cfg.kind == "json":
        return JsonSource(files)
    return ArrayRecordSource(files)
