"""Columnar sources: Parquet files, Arrow IPC files and Hugging Face datasets saved to disk.

All three are random-access raw-record sources like those of sources.py: record i is
``{"data": {column: value}, "where": "file[row r]"}`` with the row's columns as Python values (a struct is a
dict, a list column a list, binary is bytes), so the same conversation layouts as JSONL apply (formats.py):
`messages` (HF/Qwen or LLaMA-Factory) or `conversations` (ShareGPT) plus `images` / `image` / `system`
columns. Image columns as Hugging Face `datasets` writes them (`Image()` = struct {bytes, path}; a
`Sequence(Image())` = a list of those) or plain path strings / bytes are image references.

Only the columns that make up a record (`RECORD_COLUMNS`) are read; other columns are never decoded.

- `ParquetSource`: the row counts of every row group come from the file footers at construction (no data is
  read); reading a record decodes its row group (its record columns) into a per-process LRU
  cache bounded in bytes (a row group larger than the cache is a configuration error), so neighbouring
  records cost nothing more. Files are read lazily and reopened in each grain worker. A global shuffle
  decodes one row group per record; `data.parquet_shuffle_window=k` shuffles row groups instead and rows
  within k row groups at a time (data/shuffle.py), or write shuffled image data with small row groups
  (Hugging Face `datasets` writes 100-row groups for image datasets).
- `ArrowSource`: Arrow IPC files (stream or file format), memory-mapped: construction reads the record
  batch headers only; a record is a zero-copy slice of the mapped file, so nothing is loaded into memory
  beyond the pages the OS maps in for the rows read.
- `hf_disk_files(dir, split)`: the Arrow files of a `datasets.Dataset.save_to_disk` directory
  (`state.json` lists them under `_data_files`; a `DatasetDict` directory has `dataset_dict.json` and one
  such directory per split). So a saved dataset is an `ArrowSource`; the `datasets` package is not needed.

A row that cannot be read (a corrupt row group) is a raw record ``{"exception": ..., "kind": "bad_record"}``
classified by the worker transform under the bad-record policy; a file that is not Parquet/Arrow, or whose
columns hold no conversation, is a configuration error naming the file.
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import os
import threading
from collections.abc import Sequence

import numpy as np

CONVERSATION_COLUMNS = ("messages", "conversations")
# The columns formats.py reads; others (ids, answers, extra image columns) are never decoded.
RECORD_COLUMNS = (*CONVERSATION_COLUMNS, "system", "images", "image", "videos", "video")


def _record_columns(path: str, names: Sequence[str]) -> list[str]:
    """The columns of a file that make up its records (ValueError when it holds no conversation)."""
    if not any(c in names for c in CONVERSATION_COLUMNS):
        raise ValueError(
            f"{path}: no 'messages' or 'conversations' column (columns: {list(names)[:12]}); a Parquet / Arrow "
            "source holds one conversation per row in the JSONL layouts"
        )
    return [c for c in names if c in RECORD_COLUMNS]


class _Locator:
    """Global row -> (file, block, row in block) over files split into blocks (row groups / record batches)."""

    def __init__(self, block_rows: Sequence[Sequence[int]]):
        self.files = np.repeat(np.arange(len(block_rows)), [len(b) for b in block_rows]).astype(np.int32)
        self.blocks = np.concatenate([np.arange(len(b)) for b in block_rows] or [np.zeros(0)]).astype(
            np.int32
        )
        rows = np.concatenate([np.asarray(b, np.int64) for b in block_rows] or [np.zeros(0, np.int64)])
        self.ends = np.cumsum(rows)
        # First global row of each file (to report the row number inside the file).
        file_rows = np.asarray([sum(b) for b in block_rows], np.int64)
        self.file_starts = np.concatenate([[0], np.cumsum(file_rows)[:-1]])

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def locate(self, index: int) -> tuple[int, int, int, int]:
        """-> (file, block in file, row in block, row in file)."""
        if not 0 <= index < len(self):
            raise IndexError(f"record {index} out of range [0, {len(self)})")
        k = int(np.searchsorted(self.ends, index, side="right"))
        start = int(self.ends[k - 1]) if k else 0
        f = int(self.files[k])
        return f, int(self.blocks[k]), index - start, index - int(self.file_starts[f])


class _BlockCache:
    """Thread-safe LRU of decoded blocks (pyarrow Tables / RecordBatches) bounded by their bytes. Threads
    asking for a block that another thread is decoding wait for that decode instead of repeating it."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: collections.OrderedDict = collections.OrderedDict()
        self._pending: dict = {}  # key -> Future of the block being decoded
        self._bytes = 0
        self._lock = threading.Lock()
        self.loads = 0  # blocks decoded (a test and a benchmark read it)

    @property
    def nbytes(self) -> int:
        """Bytes of the blocks held now."""
        return self._bytes

    def get(self, key, load):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            pending = self._pending.get(key)
            if pending is None:
                pending = self._pending[key] = concurrent.futures.Future()
                owner = True
            else:
                owner = False
        if not owner:
            return pending.result()  # re-raises the decoding thread's exception
        try:
            block = load()  # outside the lock: threads decode different blocks at once
        except BaseException as e:
            with self._lock:
                del self._pending[key]
            pending.set_exception(e)
            raise
        with self._lock:
            del self._pending[key]
            self.loads += 1
            self._items[key] = block
            self._bytes += block.nbytes
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes
        pending.set_result(block)
        return block


class ParquetSource:
    """Parquet files; record i is row i over the files in order, decoded one row group at a time."""

    def __init__(self, paths: Sequence[str], cache_bytes: int = 256 << 20):
        import pyarrow.parquet as pq

        self._paths = list(paths)
        self._columns = []
        block_rows = []
        self.max_block_bytes = 0  # uncompressed bytes of the largest row group (its record columns)
        for path in self._paths:
            try:
                meta = pq.ParquetFile(path).metadata
            except Exception as e:  # noqa: BLE001 -- pyarrow raises ArrowInvalid / OSError for non-Parquet files
                raise ValueError(f"{path}: not a readable Parquet file ({type(e).__name__}: {e})") from None
            columns = _record_columns(path, meta.schema.to_arrow_schema().names)
            self._columns.append(columns)
            groups = [meta.row_group(g) for g in range(meta.num_row_groups)]
            for g, group in enumerate(groups):
                size = sum(  # uncompressed bytes of the leaf columns under the record columns
                    group.column(i).total_uncompressed_size
                    for i in range(group.num_columns)
                    if group.column(i).path_in_schema.split(".")[0] in columns
                )
                self.max_block_bytes = max(self.max_block_bytes, size)
                if size > cache_bytes:
                    raise ValueError(
                        f"{path}: row group {g} holds {size / 2**20:.0f} MiB uncompressed, more "
                        f"than the decoded row group cache (data.parquet_cache_mb={cache_bytes >> 20}); a record "
                        "read decodes its whole row group: rewrite the file with smaller row groups (e.g. "
                        "pyarrow.parquet.write_table(table, path, row_group_size=100)) or raise the cache"
                    )
            block_rows.append([group.num_rows for group in groups])
        self._locator = _Locator(block_rows)
        self.block_rows = [n for rows in block_rows for n in rows]  # rows of each row group, in record order
        self._cache_bytes = cache_bytes
        self._open()

    def _open(self):
        self._local = threading.local()  # a ParquetFile reader per thread (grain reads with several)
        self.cache = _BlockCache(self._cache_bytes)

    def _file(self, f: int):
        import pyarrow.parquet as pq

        files = self._local.__dict__.setdefault("files", {})
        if f not in files:
            files[f] = pq.ParquetFile(self._paths[f], memory_map=True)
        return files[f]

    def __len__(self) -> int:
        return len(self._locator)

    def __getitem__(self, index: int) -> dict:
        f, g, k, row = self._locator.locate(int(index))
        where = f"{self._paths[f]}[row {row}]"
        try:
            group = self.cache.get((f, g), lambda: self._file(f).read_row_group(g, columns=self._columns[f]))
            return {"data": group.slice(k, 1).to_pylist()[0], "where": where}
        except Exception as e:  # noqa: BLE001 -- a corrupt row group is a bad record, classified downstream
            return {
                "exception": f"row group {g}: {type(e).__name__}: {e}",
                "kind": "bad_record",
                "where": where,
            }

    def __getstate__(self):
        state = dict(self.__dict__)
        for key in ("_local", "cache"):
            state.pop(key)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._open()

    def __repr__(self) -> str:
        return f"ParquetSource({len(self._paths)} files, {len(self)} records)"


def _open_arrow(path: str):
    """Memory-mapped Arrow IPC reader of `path` (file format if it starts with the magic, else stream)."""
    import pyarrow as pa

    source = pa.memory_map(path)
    if source.read(6) == b"ARROW1":
        source.seek(0)
        reader = pa.ipc.open_file(source)
        return [reader.get_batch(i) for i in range(reader.num_record_batches)], reader.schema
    source.seek(0)
    reader = pa.ipc.open_stream(source)
    return list(reader), reader.schema


class ArrowSource:
    """Arrow IPC files (Hugging Face `datasets` cache / save_to_disk files); record i is row i, zero-copy."""

    def __init__(self, paths: Sequence[str]):
        self._paths = list(paths)
        self._columns = []
        block_rows = []
        for path in self._paths:
            try:
                batches, schema = _open_arrow(path)
            except Exception as e:  # noqa: BLE001 -- ArrowInvalid / OSError for non-Arrow files
                raise ValueError(f"{path}: not a readable Arrow IPC file ({type(e).__name__}: {e})") from None
            self._columns.append(_record_columns(path, schema.names))
            block_rows.append([b.num_rows for b in batches])
        self._locator = _Locator(block_rows)
        self._batches: dict[int, list] = {}
        self._lock = threading.Lock()

    def _file_batches(self, f: int) -> list:
        with self._lock:
            if f not in self._batches:
                self._batches[f] = _open_arrow(self._paths[f])[0]
            return self._batches[f]

    def __len__(self) -> int:
        return len(self._locator)

    def __getitem__(self, index: int) -> dict:
        f, b, k, row = self._locator.locate(int(index))
        where = f"{self._paths[f]}[row {row}]"
        try:
            row = self._file_batches(f)[b].slice(k, 1).select(self._columns[f])
            return {"data": row.to_pylist()[0], "where": where}
        except Exception as e:  # noqa: BLE001 -- a damaged batch is a bad record, classified downstream
            return {
                "exception": f"record batch {b}: {type(e).__name__}: {e}",
                "kind": "bad_record",
                "where": where,
            }

    def __getstate__(self):
        return {"_paths": self._paths, "_locator": self._locator, "_columns": self._columns}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._batches, self._lock = {}, threading.Lock()

    def __repr__(self) -> str:
        return f"ArrowSource({len(self._paths)} files, {len(self)} records)"


def is_hf_disk(path: str) -> bool:
    """True for a `save_to_disk` directory (a Dataset's state.json or a DatasetDict's dataset_dict.json)."""
    return os.path.isdir(path) and any(
        os.path.isfile(os.path.join(path, f)) for f in ("state.json", "dataset_dict.json")
    )


def hf_disk_files(path: str, split: str | None) -> list[str]:
    """The Arrow files of a `datasets` save_to_disk directory, in order (ValueError naming what is wrong)."""
    if os.path.isfile(os.path.join(path, "dataset_dict.json")):
        with open(os.path.join(path, "dataset_dict.json"), encoding="utf-8") as f:
            splits = json.load(f).get("splits", [])
        if split not in splits:
            raise ValueError(
                f"{path}: a DatasetDict with splits {splits}; split={split!r} is not one of them"
            )
        return hf_disk_files(os.path.join(path, split), None)
    state_path = os.path.join(path, "state.json")
    if not os.path.isfile(state_path):
        raise ValueError(
            f"{path}: not a datasets.save_to_disk directory (no state.json or dataset_dict.json)"
        )
    try:
        with open(state_path, encoding="utf-8") as f:
            state = json.load(f)
        names = [d["filename"] for d in state["_data_files"]]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{state_path}: cannot read the list of data files (_data_files): {e!r}") from None
    files = [os.path.join(path, n) for n in names]
    missing = [p for p in files if not os.path.isfile(p)]
    if not files or missing:
        raise ValueError(f"{path}: data file {missing[0] if missing else '(none listed)'} not found")
    return files
