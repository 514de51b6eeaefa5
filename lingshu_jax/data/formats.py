"""Conversation formats -> one canonical form: HF/Qwen chat `messages` with typed content parts.

Accepted record layouts (detected per record):
- HF / Qwen: ``{"messages": [{"role": "user", "content": [{"type": "image", "image": "a.png"},
  {"type": "text", "text": "..."}]}, {"role": "assistant", "content": "..."}]}``
- LLaMA-Factory / ShareGPT with placeholders: ``{"messages": [{"role": "user", "content": "<image>What?"},
  ...], "images": ["a.png"]}`` (`<image>` tags consumed in order of appearance; `<video>` tags likewise
  take ``"videos": [...]``, each a frame folder, a list of frame files or a video file)
- ShareGPT / LLaVA: ``{"conversations": [{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", ...}],
  "images": [...]}`` (or a single ``"image": "a.png"``); roles human/gpt/system (also user/assistant).
An optional top-level ``"system"`` string becomes the first message.

Output: ``(messages, images)``: messages as ``[{"role", "content": [parts]}]`` with parts
``{"type": "text", "text": s}``, ``{"type": "image", "image": ref}`` or ``{"type": "video", "video": ref}``
and `images` the image refs in order (path strings, encoded bytes or decoded arrays; `media` lists images
and videos together in order). Defects raise `DataError` (see errors.py).
"""

from __future__ import annotations

import json
import re
from typing import Any

from lingshu_jax.data.errors import (
    BAD_RECORD,
    EMPTY_ASSISTANT,
    IMAGE_TAG_MISMATCH,
    MALFORMED_JSON,
    UNKNOWN_ROLE,
    DataError,
)

IMAGE_TAG = "<image>"
VIDEO_TAG = "<video>"
_TAG = re.compile("(<image>|<video>)")
ROLES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}


def decode_record(data: Any, where: str) -> dict:
    """bytes / str (JSON) or an already decoded dict -> dict; malformed JSON -> DataError(malformed_json)."""
    if isinstance(data, (bytes, bytearray, str)):
        try:
            data = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(MALFORMED_JSON, f"invalid JSON ({e})", where) from None
    if not isinstance(data, dict):
        raise DataError(BAD_RECORD, f"a record must be a JSON object, got {type(data).__name__}", where)
    return {k: _maybe_json(k, v, where) for k, v in data.items()}


def _maybe_json(key: str, value: Any, where: str) -> Any:
    """TFDS stores nested conversations as JSON text features: parse those."""
    if key in ("messages", "conversations") and isinstance(value, (bytes, str)):
        try:
            return json.loads(value)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(MALFORMED_JSON, f"field {key!r}: invalid JSON ({e})", where) from None
    if key == "system" and isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def to_messages(record: dict, where: str) -> tuple[list[dict], list[Any]]:
    """A decoded record in any accepted layout -> (canonical messages, image refs in order)."""
    if "messages" in record:
        turns = [_turn(m, "role", "content", where) for m in _as_list(record["messages"], "messages", where)]
    elif "conversations" in record:
        turns = [
            _turn(m, "from", "value", where)
            for m in _as_list(record["conversations"], "conversations", where)
        ]
    else:
        raise DataError(
            BAD_RECORD, f"no 'messages' or 'conversations' key (keys: {sorted(record)[:8]})", where
        )
    system = record.get("system")
    if system and not any(role == "system" for role, _ in turns):
        turns.insert(0, ("system", system))
    listed = {
        "image": _listed(record, "images", "image", where),
        "video": _listed(record, "videos", "video", where),
    }
    messages, images, used = [], [], {"image": 0, "video": 0}
    for role, content in turns:
        if isinstance(content, str):
            parts = _split_tags(content, listed, used)
        else:
            parts = _typed_parts(content, where, listed, used)
        images.extend(p["image"] for p in parts if p["type"] == "image")
        if role == "assistant" and not any(p["type"] == "text" and p["text"].strip() for p in parts):
            raise DataError(EMPTY_ASSISTANT, f"assistant turn {len(messages)} is empty", where)
        messages.append({"role": role, "content": parts})
    for kind, tag in (("image", IMAGE_TAG), ("video", VIDEO_TAG)):
        n, have = used[kind], len(listed[kind])
        if n != have:
            more = "more" if n > have else "fewer"
            raise DataError(
                IMAGE_TAG_MISMATCH, f"{n} {tag} tags but {have} {kind}s ({more} tags than {kind}s)", where
            )
    return messages, images


def media(messages: list[dict]) -> list[tuple[str, Any]]:
    """(kind, ref) of every image / video part of canonical messages, in order of appearance."""
    return [
        (p["type"], p[p["type"]]) for m in messages for p in m["content"] if p["type"] in ("image", "video")
    ]


def _as_list(value, key: str, where: str) -> list:
    if not isinstance(value, list) or not value:
        raise DataError(BAD_RECORD, f"{key!r} must be a non-empty list", where)
    return value


def _turn(message: Any, role_key: str, content_key: str, where: str) -> tuple[str, Any]:
    if not isinstance(message, dict) or role_key not in message or content_key not in message:
        raise DataError(
            BAD_RECORD, f"a turn needs {role_key!r} and {content_key!r}: {str(message)[:120]}", where
        )
    role = message[role_key]
    if role not in ROLES:
        raise DataError(UNKNOWN_ROLE, f"unknown role {role!r} (expected one of {sorted(ROLES)})", where)
    content = message[content_key]
    if content is None:
        content = ""
    if not isinstance(content, (str, list)):
        raise DataError(
            BAD_RECORD, f"content must be a string or a list of parts, got {type(content).__name__}", where
        )
    return ROLES[role], content


def _listed(record: dict, key: str, single: str, where: str) -> list:
    """The record's `images` (or one `image`) / `videos` (or one `video`) as a list."""
    items = record.get(key, record.get(single))
    if items is None:
        return []
    if (
        isinstance(items, (str, bytes, dict))
        or not isinstance(items, (list, tuple))
        and hasattr(items, "shape")
    ):
        return [items]  # one path / bytes / {bytes, path} struct (a `datasets` Image() or Video()) / array
    if not isinstance(items, (list, tuple)):
        raise DataError(BAD_RECORD, f"{key!r} must be a list, got {type(items).__name__}", where)
    return list(items)


def _take(listed: dict, used: dict, kind: str):
    """The next listed image / video (None past the end: counted, then reported as a tag mismatch)."""
    k = used[kind]
    used[kind] += 1
    return listed[kind][k] if k < len(listed[kind]) else None


def _split_tags(text: str, listed: dict, used: dict) -> list[dict]:
    """'a<image>b<video>' -> text/image/video parts, taking the listed images / videos in order."""
    parts = []
    for piece in _TAG.split(text):
        if piece in (IMAGE_TAG, VIDEO_TAG):
            kind = piece[1:-1]
            parts.append({"type": kind, kind: _take(listed, used, kind)})
        elif piece:
            parts.append({"type": "text", "text": piece})
    return parts


def _typed_parts(content: list, where: str, listed: dict, used: dict) -> list[dict]:
    """Typed parts -> canonical parts; an image (video) part without data takes the record's next listed
    image (video), as in the TRL / Parquet layout."""
    parts = []
    for part in content:
        if not isinstance(part, dict):
            raise DataError(BAD_RECORD, f"content part must be an object, got {type(part).__name__}", where)
        # Parquet / Arrow rows hold every struct field of the column (None where a part has none).
        kind = part.get("type") or (
            "image" if part.get("image") is not None else "text" if part.get("text") is not None else None
        )
        if kind == "image" or part.get("image_url") is not None:
            ref = part.get("image")
            if ref is None:
                ref = part.get("image_url")
            if isinstance(ref, dict) and "url" in ref:  # OpenAI style {"image_url": {"url": ...}}
                ref = ref.get("url")
            if ref is None:  # a placeholder: the record's images in order (like <image> tags)
                if not listed["image"]:
                    raise DataError(BAD_RECORD, "image part without 'image' (and no 'images' listed)", where)
                ref = _take(listed, used, "image")
            parts.append({"type": "image", "image": ref})
        elif kind == "video":
            ref = part.get("video")
            if ref is None:
                if not listed["video"]:
                    raise DataError(BAD_RECORD, "video part without 'video' (and no 'videos' listed)", where)
                ref = _take(listed, used, "video")
            parts.append({"type": "video", "video": ref})
        elif kind == "text":
            parts.append({"type": "text", "text": str(part.get("text") or "")})
        else:
            raise DataError(
                BAD_RECORD, f"unsupported content part type {kind!r} (text, image and video only)", where
            )
    return parts
