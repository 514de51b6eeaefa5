"""Reading benchmark files in their published formats (json, jsonl, csv, parquet) with clear errors.

Every error is a `ValueError` that names the file and the record (`file:line` for JSON, JSON lines and
CSV, where the line is the one a record starts on; `file[index]` for parquet rows) and what is wrong.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from typing import Any

from lingshu_jax.evals.types import LoadOptions

Record = dict[str, Any]


def read_json(path: str) -> Any:
    """A whole JSON document."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as exc:
        raise ValueError(f"{path}: file not found") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc


def read_jsonl(path: str) -> list[tuple[str, Record]]:
    """(location, record) per non-empty line."""
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{line_no}: invalid JSON: {exc.msg}") from exc
                if not isinstance(rec, dict):
                    raise ValueError(f"{path}:{line_no}: expected a JSON object, got {type(rec).__name__}")
                out.append((f"{path}:{line_no}", rec))
    except FileNotFoundError as exc:
        raise ValueError(f"{path}: file not found") from exc
    return out


def _array_start_lines(path: str) -> list[int] | None:
    """The line each top-level element of a JSON array starts on (None when the file is not an array)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    decoder = json.JSONDecoder()
    pos = len(text) - len(text.lstrip())
    if not text.startswith("[", pos):
        return None
    pos, line, lines = pos + 1, 1 + text.count("\n", 0, pos + 1), []
    last = pos
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return lines
        line += text.count("\n", last, pos)
        lines.append(line)
        _, end = decoder.raw_decode(text, pos)
        line += text.count("\n", pos, end)
        pos = last = end


def read_json_records(path: str) -> list[tuple[str, Record]]:
    """(location `file:line`, record) of a JSON array of objects."""
    data = read_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON array of records, got {type(data).__name__}")
    lines = _array_start_lines(path) or []
    out = []
    for i, rec in enumerate(data):
        loc = f"{path}:{lines[i]}" if i < len(lines) else f"{path}[{i}]"
        if not isinstance(rec, dict):
            raise ValueError(f"{loc}: expected a JSON object, got {type(rec).__name__}")
        out.append((loc, rec))
    return out


def read_csv(path: str, header: bool = True, fieldnames: list[str] | None = None) -> list[tuple[str, Record]]:
    """(location, record) per CSV row (line numbers count the header)."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, fieldnames=None if header else fieldnames)
            return [(f"{path}:{reader.line_num}", dict(row)) for row in reader]
    except FileNotFoundError as exc:
        raise ValueError(f"{path}: file not found") from exc
    except csv.Error as exc:
        raise ValueError(f"{path}: invalid CSV: {exc}") from exc


def read_parquet(path: str) -> list[tuple[str, Record]]:
    """(location, record) per parquet row."""
    import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel

    try:
        rows = pq.read_table(path).to_pylist()
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read parquet: {exc}") from exc
    return [(f"{path}[{i}]", row) for i, row in enumerate(rows)]


def read_records(path: str) -> list[tuple[str, Record]]:
    """Records of a .json (array), .jsonl, .csv or .parquet file."""
    if path.endswith(".parquet"):
        return read_parquet(path)
    if path.endswith(".jsonl"):
        return read_jsonl(path)
    if path.endswith(".csv"):
        return read_csv(path)
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            head = f.read(1024).lstrip()
        return read_json_records(path) if head.startswith("[") else read_jsonl(path)
    raise ValueError(f"{path}: unsupported file type (expected .json, .jsonl, .csv or .parquet)")


def find_first(root: str, patterns: Iterable[str], what: str) -> list[str]:
    """Files of the first glob pattern (relative to root, `**` allowed) that matches anything."""
    for pattern in patterns:
        hits = sorted(glob.glob(os.path.join(root, pattern), recursive=True))
        hits = [h for h in hits if os.path.isfile(h)]
        if hits:
            return hits
    raise ValueError(f"{root}: no {what} found (looked for {', '.join(patterns)})")


def require(rec: Mapping[str, Any], key: str, where: str, allow_empty: bool = False) -> Any:
    """rec[key], or a ValueError naming the record."""
    if key not in rec or rec[key] is None:
        raise ValueError(f"{where}: missing field {key!r} (fields: {sorted(rec)})")
    value = rec[key]
    if not allow_empty and isinstance(value, str) and not value.strip():
        raise ValueError(f"{where}: field {key!r} is empty")
    return value


def image_path(root: str, rel: str, where: str, options: LoadOptions) -> str:
    """root/rel, checked to exist when images are needed."""
    path = os.path.join(root, rel)
    if options.need_images and not os.path.isfile(path):
        raise ValueError(f"{where}: image {path} not found")
    return path


def embedded_image(value: Any, where: str, options: LoadOptions) -> str:
    """A path for an image stored inside a record (HF `{"bytes", "path"}`, raw bytes, or a path)."""
    if isinstance(value, str):
        return value
    data = value.get("bytes") if isinstance(value, dict) else value
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise ValueError(f"{where}: image field holds no bytes")
    if not options.need_images:
        return where
    name = value.get("path") if isinstance(value, dict) else None
    ext = os.path.splitext(name)[1].lower() if name else ""
    if ext not in (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"):
        ext = ".png" if data[:8] == b"\x89PNG\r\n\x1a\n" else ".jpg"
    cache = options.cache_dir or os.path.join(tempfile.gettempdir(), "lingshu_eval_images")
    os.makedirs(cache, exist_ok=True)
    path = os.path.join(cache, hashlib.sha1(data).hexdigest() + ext)
    if not os.path.exists(path):
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    return path
