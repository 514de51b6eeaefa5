"""Offline builder of a Qwen2 / Qwen2.5-VL tokenizer directory (tests and the demo).

Source: `dashscope/resources/qwen.tiktoken` (Qwen's 151,643 byte-level BPE ranks, "base64 rank" per line),
shipped by the PyPI package `dashscope`. We write a `tokenizers` byte-level BPE `tokenizer.json`
(NFC normaliser, Qwen2 split regex, ByteLevel pre-tokenizer / decoder, as Qwen2's own file) and a
`tokenizer_config.json` carrying the Qwen2.5-VL special tokens and chat template.

Merges follow from ranks exactly as transformers' `TikTokenConverter` derives them: every split
(left, right) of a token whose both halves are tokens is a merge, ordered by the rank of the result
(then by the ranks of the halves). BPE with these merges applies, at each step, the adjacent pair whose
concatenation has the lowest rank -- tiktoken's rule -- so ids equal Qwen's.

`vocab_size=K` keeps ranks [0, K): BPE ranks are merge order, so a prefix of the ranks is a valid smaller
BPE (a merge's halves always rank below its result). Special tokens are numbered from K.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import tempfile

from lingshu_jax.processing.chat import QWEN25_VL_CHAT_TEMPLATE

QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
FULL_VOCAB = 151_643

# (content, special) in id order from the first id after the ranks, as in Qwen2.5-VL's tokenizer_config.
SPECIAL_TOKENS = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
)

_CACHE_VERSION = "1"


def tiktoken_path() -> str:
    """Path of `qwen.tiktoken` inside the installed `dashscope` package (no import of dashscope itself)."""
    import importlib.util

    spec = importlib.util.find_spec("dashscope")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "build_qwen_tokenizer needs the PyPI package `dashscope` (pip install dashscope==2.0.2)"
        )
    path = os.path.join(next(iter(spec.submodule_search_locations)), "resources", "qwen.tiktoken")
    if not os.path.isfile(path):
        raise ValueError(f"{path}: not found in the installed dashscope package")
    return path


def load_ranks(path: str | None = None) -> dict[bytes, int]:
    """Reads a tiktoken ranks file: one `base64(token) rank` per line -> {token bytes: rank}."""
    path = path or tiktoken_path()
    ranks = {}
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: bad tiktoken line {line[:60]!r}") from e
    return ranks


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode map used by ByteLevel BPE files."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def vocab_and_merges(
    ranks: dict[bytes, int], vocab_size: int
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-level vocab {token string: id} of ranks < vocab_size, and merges ordered by the result's rank."""
    byte_map = _bytes_to_unicode()
    kept = {tok: r for tok, r in ranks.items() if r < vocab_size}
    missing = [b for b in range(256) if bytes([b]) not in kept]
    if missing:
        raise ValueError(
            f"vocab_size={vocab_size} drops single-byte tokens (e.g. byte {missing[0]}); use >= 256"
        )
    vocab = {"".join(byte_map[b] for b in tok): r for tok, r in kept.items()}
    merges = []
    for tok, r in kept.items():
        for i in range(1, len(tok)):
            left, right = tok[:i], tok[i:]
            # Every split into two kept tokens (tiktoken merges any adjacent pair whose concatenation is a
            # token); parts or results at ranks >= vocab_size are dropped with their tokens.
            if left in kept and right in kept:
                merges.append((r, kept[left], kept[right], left, right))
    merges.sort()

    def to_str(b: bytes) -> str:
        return "".join(byte_map[x] for x in b)

    return vocab, [(to_str(m[3]), to_str(m[4])) for m in merges]


def _tokenizer_json(vocab_size: int) -> str:
    """Serialised `tokenizers` Tokenizer for the first `vocab_size` ranks plus the special tokens."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE

    vocab, merges = vocab_and_merges(load_ranks(), vocab_size)
    tok = Tokenizer(
        BPE(
            vocab=vocab,
            merges=merges,
            dropout=None,
            unk_token=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
            byte_fallback=False,
            ignore_merges=False,
        )
    )
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    # Added one by one so that ids follow SPECIAL_TOKENS order from vocab_size.
    for content, special in SPECIAL_TOKENS:
        added = AddedToken(content, special=special, normalized=False)
        if special:
            tok.add_special_tokens([added])
        else:
            tok.add_tokens([added])
    for i, (content, _) in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(content) != vocab_size + i:
            raise AssertionError(f"special token {content} got id {tok.token_to_id(content)}")
    return tok.to_str()


def tokenizer_config(vocab_size: int) -> dict:
    """tokenizer_config.json contents mirroring Qwen2.5-VL-7B-Instruct's (ids shifted to vocab_size)."""
    decoder = {
        str(vocab_size + i): {
            "content": c,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": s,
        }
        for i, (c, s) in enumerate(SPECIAL_TOKENS)
    }
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": decoder,
        "additional_special_tokens": [c for c, s in SPECIAL_TOKENS[1:] if s],
        "bos_token": None,
        "chat_template": QWEN25_VL_CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 131072,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def _cache_dir() -> str:
    base = os.environ.get("LINGSHU_JAX_CACHE") or os.path.join(tempfile.gettempdir(), "lingshu_jax_cache")
    return os.path.join(base, "tokenizers")


def _cached_tokenizer_json(vocab_size: int) -> str:
    """Path of the cached tokenizer.json for vocab_size (built once; atomic write, safe across processes)."""
    with open(tiktoken_path(), "rb") as f:
        src_digest = hashlib.sha256(f.read()).hexdigest()[:12]
    path = os.path.join(_cache_dir(), f"qwen2_v{_CACHE_VERSION}_{src_digest}_{vocab_size}.json")
    if not os.path.isfile(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(_tokenizer_json(vocab_size))
        os.replace(tmp, path)
    return path


def build_qwen_tokenizer(out_dir: str, vocab_size: int | None = None) -> str:
    """Writes tokenizer.json + tokenizer_config.json for a Qwen2.5-VL tokenizer into out_dir; returns out_dir.

    vocab_size=None keeps all 151,643 ranks (ids equal Qwen2.5-VL's: <|im_start|> = 151644); a smaller
    K keeps ranks [0, K) and numbers the 22 added tokens from K (the model's embedding needs
    K + 22 rows at least).
    """
    vocab_size = FULL_VOCAB if vocab_size is None else int(vocab_size)
    if not 256 <= vocab_size <= FULL_VOCAB:
        raise ValueError(f"vocab_size must be in [256, {FULL_VOCAB}], got {vocab_size}")
    os.makedirs(out_dir, exist_ok=True)
    shutil.copyfile(_cached_tokenizer_json(vocab_size), os.path.join(out_dir, "tokenizer.json"))
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_config(vocab_size), f, indent=2, ensure_ascii=False)
    return out_dir


def num_tokens(vocab_size: int | None = None) -> int:
    """Total number of ids (ranks + added tokens) of a tokenizer built with this vocab_size."""
    return (FULL_VOCAB if vocab_size is None else vocab_size) + len(SPECIAL_TOKENS)
