"""Streaming safetensors I/O: a validating multi-file reader and a sharded writer, tensor by tensor.

Reading: each file's header is parsed and checked here (every tensor's byte range must lie inside the
file and the ranges must cover the data section exactly, which is how a truncated download shows up),
then whole tensors are streamed in row blocks of `block_bytes` with plain `readinto` into one reusable
buffer, so a consumer can transpose/cast each block straight into its destination: no second full copy
of the tensor and no mapped pages of the file are ever held. Slices (for sharded loading) are read with
`safetensors.safe_open(framework="numpy").get_slice(key)[idx]`, which reads only the bytes needed;
numpy knows `bfloat16` only once `ml_dtypes` is imported (else safe_open raises "data type 'bfloat16'
not understood"), so this module imports it.

Writing streams: the whole shard plan (names, shapes, dtypes -> offsets) is known up front, so each shard's
header is written first and tensors are appended as they arrive, in row blocks (cast per block). Peak
host memory is one block, not one shard (nor one tensor: the caller may pass a transposed view). Files
follow the safetensors format exactly (8-byte little-endian header length, JSON header padded with spaces
to a multiple of 8, `__metadata__ = {"format": "pt"}` as transformers writes) and are read back by
`safe_open` and `transformers` in the tests.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import struct
import sys
from typing import Iterable, Iterator

import ml_dtypes  # noqa: F401  (registers numpy 'bfloat16', needed by safe_open for BF16 tensors)
import numpy as np
from safetensors import SafetensorError, safe_open

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
# safetensors dtype code <-> numpy dtype, for the dtypes a model checkpoint may hold.
ST_TO_NP = {"F32": np.dtype(np.float32), "BF16": np.dtype(ml_dtypes.bfloat16), "F16": np.dtype(np.float16)}
NP_TO_ST = {v: k for k, v in ST_TO_NP.items()}


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    file: str  # absolute path of the .safetensors file holding it
    dtype: str  # safetensors code ("F32", "BF16", ...)
    shape: tuple[int, ...]
    offset: int = 0  # absolute byte offset of the data in `file`

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * _itemsize(self.dtype)


def _itemsize(code: str) -> int:
    sizes = {
        "F64": 8,
        "I64": 8,
        "U64": 8,
        "F32": 4,
        "I32": 4,
        "U32": 4,
        "F16": 2,
        "BF16": 2,
        "I16": 2,
        "U16": 2,
        "I8": 1,
        "U8": 1,
        "BOOL": 1,
        "F8_E4M3": 1,
        "F8_E5M2": 1,
    }
    return sizes.get(code, 1)


def np_dtype(dtype) -> np.dtype:
    """'bfloat16' / 'float32' / np.float16 / ml_dtypes.bfloat16 ... -> np.dtype."""
    if isinstance(dtype, str) and dtype in ("bfloat16", "bf16"):
        return np.dtype(ml_dtypes.bfloat16)
    d = np.dtype(dtype)
    if d not in NP_TO_ST:
        raise ValueError(f"dtype {dtype!r}: expected one of float32, bfloat16, float16")
    return d


# ------------------------------------------------------------------------------ reading
def find_weight_files(hf_dir: str) -> tuple[list[str], dict[str, str] | None]:
    """-> (safetensors files, index weight_map or None). Raises ValueError when there are none."""
    index = os.path.join(hf_dir, INDEX_FILE)
    if os.path.exists(index):
        try:
            with open(index) as f:
                weight_map = json.load(f)["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(
                f"{index}: not a valid safetensors index ({e!r}); expected a 'weight_map'"
            ) from None
        first_key = {}
        for key, shard in weight_map.items():
            first_key.setdefault(shard, key)
        for shard, key in sorted(first_key.items()):
            if not os.path.exists(os.path.join(hf_dir, shard)):
                raise ValueError(f"{index}: shard {shard!r} (holding key {key!r}) does not exist in {hf_dir}")
        return [os.path.join(hf_dir, s) for s in sorted(first_key)], weight_map
    single = os.path.join(hf_dir, SINGLE_FILE)
    files = [single] if os.path.exists(single) else sorted(glob.glob(os.path.join(hf_dir, "*.safetensors")))
    if files:
        return files, None
    pickles = sorted(
        glob.glob(os.path.join(hf_dir, "*.bin"))
        + glob.glob(os.path.join(hf_dir, "*.pt"))
        + glob.glob(os.path.join(hf_dir, "*.pth"))
    )
    if pickles:
        raise ValueError(
            f"{hf_dir}: found only {os.path.basename(pickles[0])} (PyTorch pickle); only safetensors files are "
            "read (pickles can run code). Re-save with `model.save_pretrained(dir)` (safetensors by default)."
        )
    raise ValueError(f"{hf_dir}: no {SINGLE_FILE} or {INDEX_FILE} (not a Hugging Face model directory?)")


def read_header(path: str) -> dict[str, TensorInfo]:
    """Key -> TensorInfo for one file; ValueError naming the file when it is truncated or corrupt."""
    bad = lambda why: ValueError(f"{path}: not a valid safetensors file ({why}); it is truncated or corrupt")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise bad(f"{size} bytes, shorter than the 8-byte header length")
        n = struct.unpack("<Q", head)[0]
        if n > size - 8 or n > 100 * 2**20:
            raise bad(f"header length {n} but file size {size}")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise bad(f"header is not JSON: {e}") from None
    start, out, end = 8 + n, {}, 0
    for key, e in header.items():
        if key == "__metadata__":
            continue
        try:
            b, stop = (int(x) for x in e["data_offsets"])
            info = TensorInfo(path, str(e["dtype"]), tuple(int(d) for d in e["shape"]), start + b)
        except (KeyError, TypeError, ValueError):
            raise bad(f"malformed header entry for {key!r}") from None
        if stop - b != info.nbytes or start + stop > size:
            raise bad(f"tensor {key!r} needs bytes [{start + b}, {start + stop}) but the file has {size}")
        out[key], end = info, max(end, stop)
    if start + end != size:
        raise bad(f"data ends at byte {start + end} but the file has {size}")
    return out


class SafetensorsReader:
    """All tensors of a HF model directory (single file or sharded with an index), read on demand."""

    def __init__(self, hf_dir: str, block_bytes: int = 16 << 20):
        self.hf_dir = hf_dir
        self.block_bytes = block_bytes
        self.files, weight_map = find_weight_files(hf_dir)
        self.entries: dict[str, TensorInfo] = {}
        for path in self.files:
            for key, info in read_header(path).items():
                if key in self.entries:
                    raise ValueError(f"key {key!r} appears in both {self.entries[key].file} and {path}")
                self.entries[key] = info
        if weight_map is not None:
            for key, shard in weight_map.items():
                info = self.entries.get(key)
                if info is None or os.path.basename(info.file) != os.path.basename(shard):
                    raise ValueError(
                        f"{os.path.join(hf_dir, INDEX_FILE)}: key {key!r} is mapped to shard {shard!r}, "
                        "which does not contain it"
                    )

    def keys(self) -> list[str]:
        return list(self.entries)

    def iter_blocks(self, key: str) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yields (row_start, row_stop, tensor[row_start:row_stop]) over axis 0 in blocks of <= block_bytes
        (at least one row). The block is a view of a reused buffer: copy it before the next iteration."""
        info = self.entries[key]
        dtype = ST_TO_NP[info.dtype]
        shape = info.shape or (1,)
        row_bytes = max(1, info.nbytes // max(shape[0], 1))
        rows_per = max(1, self.block_bytes // row_bytes)
        buf = np.empty((min(rows_per, shape[0]),) + shape[1:], dtype)
        with open(info.file, "rb", buffering=0) as f:
            f.seek(info.offset)
            for r0 in range(0, shape[0], rows_per):
                r1 = min(r0 + rows_per, shape[0])
                block = buf[: r1 - r0]
                mv = block.reshape(-1).view(np.uint8)
                got = f.readinto(mv)
                while got < mv.nbytes:  # readinto may return short reads
                    more = f.readinto(mv[got:])
                    if not more:
                        raise ValueError(f"{info.file}: unexpected end of file reading {key!r}")
                    got += more
                yield r0, r1, block.reshape((r1 - r0,) + info.shape[1:]) if info.shape else block.reshape(())

    def read(self, key: str) -> np.ndarray:
        """The whole tensor as a fresh array."""
        info = self.entries[key]
        out = np.empty(info.shape, ST_TO_NP[info.dtype])
        flat = out.reshape((-1,) + info.shape[1:]) if info.shape else out.reshape(1)
        for r0, r1, block in self.iter_blocks(key):
            flat[r0:r1] = block
        return out

    def read_slice(self, key: str, idx: tuple[slice, ...]) -> np.ndarray:
        """hf_tensor[idx] reading only the bytes needed (idx: a tuple of slices)."""
        info = self.entries[key]
        try:
            with safe_open(info.file, framework="numpy") as f:
                return f.get_slice(key)[tuple(idx)]
        except SafetensorError as e:
            raise ValueError(f"{info.file}: cannot read slice {idx} of tensor {key!r} ({e})") from None


# ------------------------------------------------------------------------------ writing
@dataclasses.dataclass(frozen=True)
class PlannedTensor:
    key: str
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def plan_shards(tensors: Iterable[PlannedTensor], max_shard_size: int) -> list[list[PlannedTensor]]:
    """Greedy, order-preserving split into shards of at most `max_shard_size` bytes of tensor data
    (a single larger tensor gets a shard of its own, as transformers does)."""
    shards: list[list[PlannedTensor]] = [[]]
    size = 0
    for t in tensors:
        if shards[-1] and size + t.nbytes > max_shard_size:
            shards.append([])
            size = 0
        shards[-1].append(t)
        size += t.nbytes
    return shards if shards[0] else []


def shard_names(n: int) -> list[str]:
    return [SINGLE_FILE] if n == 1 else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]


def _header_bytes(tensors: list[PlannedTensor], metadata: dict[str, str]) -> bytes:
    header: dict = {"__metadata__": metadata}
    offset = 0
    for t in tensors:
        header[t.key] = {
            "dtype": NP_TO_ST[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + t.nbytes],
        }
        offset += t.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


class ShardedSafetensorsWriter:
    """Writes planned tensors in plan order, one open shard at a time; writes the index at `close()`."""

    def __init__(
        self,
        out_dir: str,
        tensors: list[PlannedTensor],
        max_shard_size: int = 5 * 10**9,
        metadata: dict[str, str] | None = None,
    ):
        if sys.byteorder != "little":
            raise NotImplementedError("safetensors is little-endian; big-endian hosts are not supported")
        self.out_dir = out_dir
        self.metadata = metadata or {"format": "pt"}
        self.shards = plan_shards(tensors, max_shard_size)
        self.names = shard_names(len(self.shards))
        self._queue = [(s, t) for s, shard in enumerate(self.shards) for t in shard]
        self._pos = 0
        self._file = None
        self._shard = -1

    def write(self, key: str, array: np.ndarray, block_bytes: int = 16 << 20) -> None:
        """Appends the next planned tensor; `array` may be any view (e.g. a transpose) of any float dtype:
        it is made contiguous and cast to the planned dtype one row block at a time."""
        s, t = self._queue[self._pos]
        if key != t.key or tuple(array.shape) != t.shape:
            raise ValueError(f"writer expected {t.key} {t.shape}, got {key} {tuple(array.shape)}")
        if s != self._shard:
            self._close_file()
            self._shard = s
            self._file = open(os.path.join(self.out_dir, self.names[s]), "wb")
            self._file.write(_header_bytes(self.shards[s], self.metadata))
        rows = array.reshape(1) if array.ndim == 0 else array
        rows_per = max(1, block_bytes // max(1, t.nbytes // max(rows.shape[0], 1)))
        for r0 in range(0, rows.shape[0], rows_per):
            block = np.ascontiguousarray(rows[r0 : r0 + rows_per], dtype=t.dtype)
            self._file.write(block.reshape(-1).view(np.uint8).data)
        self._pos += 1

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def close(self) -> list[str]:
        """Finishes the last shard and writes `model.safetensors.index.json` when sharded."""
        self._close_file()
        if self._pos != len(self._queue):
            raise ValueError(
                f"writer closed after {self._pos} of {len(self._queue)} tensors "
                f"(next expected: {self._queue[self._pos][1].key})"
            )
        if len(self.shards) > 1:
            weight_map = {t.key: self.names[s] for s, shard in enumerate(self.shards) for t in shard}
            index = {
                "metadata": {
                    "total_parameters": sum(int(np.prod(t.shape)) for _, t in self._queue),
                    "total_size": sum(t.nbytes for _, t in self._queue),
                },
                "weight_map": dict(sorted(weight_map.items())),
            }
            with open(os.path.join(self.out_dir, INDEX_FILE), "w") as f:
                json.dump(index, f, indent=2)
        return [os.path.join(self.out_dir, n) for n in self.names]
