"""Bad-input policy: every data defect has a named class, and a policy per class says raise or skip.

Data errors (one bad record among millions) default to `skip`: the record is dropped and counted.
Configuration errors (a missing data file, a bad option) always raise `ValueError` at construction time.

Counting across grain worker processes: a worker never drops a record. A record that fails becomes a small
*skip record* ``{"error": kind, "where": "file:line", "stats": {"skipped/<kind>": 1}}`` that travels to the
main process like any sample. The packer (main process) adds every record's ``stats`` into the stats of
the batch it is building, and the pipeline iterator sums the batch stats into its cumulative counters,
which are part of the checkpointed iterator state. So counts are exact whatever the worker count, survive
resume, and no cross-process shared counter is needed. Keeping skip records in the stream also keeps the
record order (and so the batches) independent of the worker count, since grain's `mp_prefetch` interleaves
worker outputs round-robin and a worker-side filter would break that interleaving.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# Data-error classes (the counter is "skipped/<class>").
MISSING_IMAGE = "missing_image"  # image file (video frame folder) not found
CORRUPT_IMAGE = "corrupt_image"  # unreadable / undecodable / degenerate image or video file
DECOMPRESSION_BOMB = "decompression_bomb"  # pixel count over the limit, refused before decoding
PATH_ESCAPE = "path_escape"  # image path resolves outside the dataset root
MALFORMED_JSON = "malformed_json"  # a record that is not valid JSON
BAD_RECORD = "bad_record"  # valid JSON but not a conversation we understand
UNKNOWN_ROLE = "unknown_role"  # a role other than system/user/assistant (human/gpt)
EMPTY_ASSISTANT = "empty_assistant"  # an assistant turn with no text
IMAGE_TAG_MISMATCH = "image_tag_mismatch"  # number of <image> (<video>) tags != number of images (videos)
TOO_MANY_PATCHES = "too_many_patches"  # one sample's vision patches exceed the batch patch budget
TOO_LONG = "too_long"  # longer than seq_len under truncation="drop"
NO_LABELS = "no_labels"  # nothing left to train on (e.g. after truncation)

DATA_ERRORS = (
    MISSING_IMAGE,
    CORRUPT_IMAGE,
    DECOMPRESSION_BOMB,
    PATH_ESCAPE,
    MALFORMED_JSON,
    BAD_RECORD,
    UNKNOWN_ROLE,
    EMPTY_ASSISTANT,
    IMAGE_TAG_MISMATCH,
    TOO_MANY_PATCHES,
    TOO_LONG,
    NO_LABELS,
)
POLICIES = ("skip", "error")


class DataError(Exception):
    """A defect of one record: `kind` is one of DATA_ERRORS, `where` is "file:line" (or "file:record")."""

    def __init__(self, kind: str, message: str, where: str = "?"):
        if kind not in DATA_ERRORS:
            raise ValueError(f"unknown data error class {kind!r}; known: {DATA_ERRORS}")
        super().__init__(message)
        self.kind, self.message, self.where = kind, message, where

    def __str__(self) -> str:
        return f"{self.where}: {self.message} [{self.kind}]"


class ErrorPolicy:
    """Per-class policy. `ErrorPolicy("skip", {"missing_image": "error"})`: skip all but missing images."""

    def __init__(self, default: str = "skip", overrides: Mapping[str, str] | None = None):
        overrides = dict(overrides or {})
        for kind, policy in [("default", default), *overrides.items()]:
            if policy not in POLICIES:
                raise ValueError(f"data.on_error[{kind!r}] = {policy!r}: expected one of {POLICIES}")
            if kind != "default" and kind not in DATA_ERRORS:
                raise ValueError(f"data.on_error: unknown data error class {kind!r}; known: {DATA_ERRORS}")
        self.default, self.overrides = default, overrides

    def __call__(self, kind: str) -> str:
        return self.overrides.get(kind, self.default)

    def handle(self, error: DataError) -> dict:
        """The skip record for `error`, or raises ValueError("file:line: message [class]") under `error`."""
        if self(error.kind) == "error":
            key = f"on_error_overrides.{error.kind}" if error.kind in self.overrides else "on_error"
            policy = f"policy data.{key}='error'; 'skip' drops and counts such records"
            raise ValueError(f"{error} ({policy})") from error
        return skip_record(error)


def skip_record(error: DataError) -> dict:
    """What a worker emits in place of a bad record (see the module docstring)."""
    return {"error": error.kind, "where": error.where, "stats": {f"skipped/{error.kind}": 1}}


def is_skip(record: Mapping) -> bool:
    return "error" in record


def classify_image_error(exc: BaseException) -> str:
    """Error class of an exception raised while loading/decoding an image."""
    if isinstance(exc, (FileNotFoundError, IsADirectoryError)):
        return MISSING_IMAGE
    text = f"{type(exc).__name__} {exc}".lower()
    if "decompressionbomb" in text or "refused before decoding" in text or "decompression bomb" in text:
        return DECOMPRESSION_BOMB
    if "no such file" in text:
        return MISSING_IMAGE
    return CORRUPT_IMAGE


def resolve_under_root(path: str, root: str, where: str) -> str:
    """Absolute path of `path` (relative to `root`); DataError(path_escape) if it leaves the root.

    Symlinks are resolved first, so a link pointing outside the root is refused too.
    """
    if path.startswith("file://"):
        path = path[len("file://") :]
    if "://" in path:
        raise DataError(MISSING_IMAGE, f"image {path!r} is a URL; remote images are never fetched", where)
    real_root = os.path.realpath(root)
    full = os.path.realpath(os.path.join(real_root, path))
    if os.path.commonpath([real_root, full]) != real_root:
        raise DataError(PATH_ESCAPE, f"image path {path!r} resolves outside the dataset root {root}", where)
    return full


def add_stats(total: dict, delta: Mapping[str, int | float]) -> dict:
    """total += delta, key by key (in place; returns total)."""
    for key, value in delta.items():
        total[key] = total.get(key, 0) + value
    return total
