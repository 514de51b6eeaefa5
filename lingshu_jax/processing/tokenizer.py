"""Tokenizer wrapper over the HF `tokenizers` library (no transformers import on this path).

Loads `tokenizer.json` (+ `tokenizer_config.json`, `generation_config.json` when present) from a
checkpoint directory, encodes without adding special tokens (Qwen2 has no BOS; its post-processor adds
nothing), decodes as transformers does (`clean_up_tokenization_spaces=False`), and exposes the ids of the
Qwen2.5-VL special tokens by name.
"""

from __future__ import annotations

import json
import os

import numpy as np
from tokenizers import Tokenizer as _HFTokenizer

SPECIAL_TOKEN_NAMES = {
    "endoftext": "<|endoftext|>",
    "im_start": "<|im_start|>",
    "im_end": "<|im_end|>",
    "vision_start": "<|vision_start|>",
    "vision_end": "<|vision_end|>",
    "vision_pad": "<|vision_pad|>",
    "image_pad": "<|image_pad|>",
    "video_pad": "<|video_pad|>",
}


def _read_json(path: str) -> dict:
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: invalid JSON ({e})") from e


def _token_str(value) -> str | None:
    """tokenizer_config token entries are strings or AddedToken dicts ({"content": ...})."""
    if isinstance(value, dict):
        return value.get("content")
    return value


class Tokenizer:
    """Qwen2 tokenizer: encode/decode, special token ids by name, eos/pad ids."""

    def __init__(
        self,
        backend: _HFTokenizer,
        config: dict | None = None,
        generation_config: dict | None = None,
        name: str = "<memory>",
    ):
        self.backend = backend
        self.config = config or {}
        self.name = name
        self.special_ids = {}
        for key, token in SPECIAL_TOKEN_NAMES.items():
            tid = backend.token_to_id(token)
            if tid is not None:
                self.special_ids[key] = tid
        eos_token = _token_str(self.config.get("eos_token")) or "<|im_end|>"
        pad_token = _token_str(self.config.get("pad_token")) or "<|endoftext|>"
        self.eos_token_id = self._require(eos_token)
        self.pad_token_id = self._require(pad_token)
        gen_eos = (generation_config or {}).get("eos_token_id")
        if gen_eos is None:
            ids = [self.eos_token_id, self.special_ids.get("endoftext")]
        else:
            ids = [gen_eos] if isinstance(gen_eos, int) else list(gen_eos)
        self.eos_token_ids = tuple(dict.fromkeys(i for i in ids if i is not None))

    @classmethod
    def from_pretrained(cls, model_dir: str) -> Tokenizer:
        """Loads `model_dir/tokenizer.json` (ValueError naming the path when missing or unreadable)."""
        path = os.path.join(model_dir, "tokenizer.json")
        if not os.path.isfile(path):
            raise ValueError(f"{path}: not found (a Qwen2 fast tokenizer file is required)")
        try:
            backend = _HFTokenizer.from_file(path)
        except Exception as e:  # tokenizers raises plain Exception subclasses
            raise ValueError(f"{path}: cannot load tokenizer ({e})") from e
        return cls(
            backend,
            _read_json(os.path.join(model_dir, "tokenizer_config.json")),
            _read_json(os.path.join(model_dir, "generation_config.json")),
            name=path,
        )

    def _require(self, token: str) -> int:
        tid = self.backend.token_to_id(token)
        if tid is None:
            raise ValueError(f"{self.name}: token {token!r} is not in the vocabulary")
        return tid

    def token_id(self, name_or_token: str) -> int:
        """Id of a special token by short name ('image_pad') or literal token ('<|image_pad|>')."""
        if name_or_token in self.special_ids:
            return self.special_ids[name_or_token]
        return self._require(name_or_token)

    def __getattr__(self, attr: str) -> int:
        # image_pad_id, video_pad_id, vision_start_id, vision_end_id, im_start_id, im_end_id, endoftext_id
        if attr.endswith("_id") and attr[:-3] in SPECIAL_TOKEN_NAMES:
            return self.token_id(attr[:-3])
        raise AttributeError(attr)

    @property
    def vocab_size(self) -> int:
        """Number of ids including added tokens (len(tokenizer) in transformers)."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    @property
    def chat_template(self) -> str | None:
        return self.config.get("chat_template") if isinstance(self.config.get("chat_template"), str) else None

    def encode(self, text: str) -> list[int]:
        """Text -> ids (special tokens in the text are recognised; nothing is added)."""
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Text -> (ids, (start, end) character offsets of each token in text)."""
        enc = self.backend.encode(text, add_special_tokens=False)
        return enc.ids, enc.offsets

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.backend.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """ids (list or 1-D array) -> text."""
        ids = np.asarray(ids).reshape(-1).tolist()
        return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def batch_decode(self, batch, skip_special_tokens: bool = False) -> list[str]:
        return [self.decode(row, skip_special_tokens) for row in batch]

    def __len__(self) -> int:
        return self.vocab_size
