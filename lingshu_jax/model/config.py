"""Model configuration: frozen dataclasses, HF `config.json` <-> ours, and named presets.

Model code reads only these frozen configs, never the experiment config. Presets are data: one dict of
HF-style fields per size, so `ModelConfig.from_hf_dict(PRESETS[name])` is the single construction path
for both presets and real checkpoints.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from typing import Any

import ml_collections

from lingshu_jax.model.remat import check_policy

_DTYPES = ("float32", "bfloat16", "float16")
_SPECIAL_ID_FIELDS = (
    "image_token_id",
    "video_token_id",
    "vision_start_token_id",
    "vision_end_token_id",
    "bos_token_id",
    "eos_token_id",
)
# Qwen2.5-VL's added tokens, numbered from the first id after the BPE ranks (<|endoftext|> first,
# <|vision_start|> 9th, <|image_pad|> 12th, ...: `lingshu_jax.testing.tokenizer.SPECIAL_TOKENS`).
QWEN_SPECIAL_TOKENS = 22


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    depth: int = 32
    hidden_size: int = 1280
    intermediate_size: int = 3420
    num_heads: int = 16
    in_channels: int = 3
    patch_size: int = 14
    temporal_patch_size: int = 2
    spatial_merge_size: int = 2
    window_size: int = 112
    out_hidden_size: int = 3584
    fullatt_block_indexes: tuple[int, ...] = (7, 15, 23, 31)
    tokens_per_second: int = 2
    rope_theta: float = 10000.0
    hidden_act: str = "silu"

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def patch_dim(self) -> int:
        """Values per flattened patch row: channels * temporal_patch * patch * patch (1176)."""
        return self.in_channels * self.temporal_patch_size * self.patch_size**2

    @property
    def merge_unit(self) -> int:
        return self.spatial_merge_size**2

    @property
    def window_merge_units(self) -> int:
        """Window side length in merged units (112 // 2 // 14 = 4)."""
        return self.window_size // self.spatial_merge_size // self.patch_size


@dataclasses.dataclass(frozen=True)
class TextConfig:
    vocab_size: int = 152064
    hidden_size: int = 3584
    intermediate_size: int = 18944
    num_hidden_layers: int = 28
    num_attention_heads: int = 28
    num_key_value_heads: int = 4
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1000000.0
    mrope_section: tuple[int, int, int] = (16, 24, 24)
    max_position_embeddings: int = 128000
    hidden_act: str = "silu"

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything the model needs. `dtype` is the compute dtype, `param_dtype` the storage dtype."""

    vision: VisionConfig = dataclasses.field(default_factory=VisionConfig)
    text: TextConfig = dataclasses.field(default_factory=TextConfig)
    tie_word_embeddings: bool = False
    image_token_id: int = 151655
    video_token_id: int = 151656
    vision_start_token_id: int = 151652
    vision_end_token_id: int = 151653
    bos_token_id: int = 151643
    eos_token_id: int | tuple[int, ...] = 151645
    # Execution policy (not part of the HF checkpoint).
    dtype: str = "float32"
    param_dtype: str = "float32"
    vision_dtype: str | None = None  # None: same as dtype
    attention_impl: str = "xla"  # "xla" | "cudnn"
    # Vision full-attention layers attend within blocks of this many patches: at least the largest image
    # (video frame) in any batch, e.g. max_pixels // 14**2. None: one dense attention over the whole stream.
    vision_attention_span: int | None = None
    # Full-attention vision layers attend within each of this many equal chunks of the stream, which must
    # each hold whole images (video frames): `prepare_inputs` / `data.vision_chunks` lay them out so. Each
    # query sees its chunk's rows (e.g. one image per chunk: exactly its own), where the span's band sees
    # 2 * span; the cheaper of the two runs. 1: off. (attention_impl="splash" attends per device chunk.)
    vision_attention_chunks: int = 1
    remat_policy: str = "none"  # a name in model/remat.py REMAT_POLICIES: "none" | "save_dots" | ... | "full"
    vision_remat_policy: str = "none"
    # Training/eval loss: the vocabulary head + cross entropy run over chunks of about this many sequence
    # positions (train/head_loss.py), so [tokens, vocab] float32 logits never exist at once. 0: one chunk.
    loss_chunk_len: int = 1024
    # Decoder layers (`unroll_layers`) and vision blocks (`vision_unroll_layers`) run as loops over stacked
    # parameters (False: one compiled layer, the TPU/GPU default) or unrolled (True: straight-line code; on
    # CPU it spares the loops' stacked residual buffers, their zero-fill and copies, but XLA may then keep
    # more temporaries alive at once; compile time grows with depth). docs/benchmark_cpu.md measures both.
    unroll_layers: bool = False
    vision_unroll_layers: bool = False

    def __post_init__(self):
        check_policy(self.remat_policy, "ModelConfig.remat_policy")
        check_policy(self.vision_remat_policy, "ModelConfig.vision_remat_policy")
        for key in ("dtype", "param_dtype"):
            if getattr(self, key) not in _DTYPES:
                raise ValueError(f"ModelConfig.{key}={getattr(self, key)!r}: expected one of {_DTYPES}")
        if not (isinstance(self.vision_attention_chunks, int) and self.vision_attention_chunks >= 1):
            raise ValueError(
                f"ModelConfig.vision_attention_chunks={self.vision_attention_chunks!r}: expected an int >= 1"
            )
        if self.vision_dtype is not None and self.vision_dtype not in _DTYPES:
            raise ValueError(f"ModelConfig.vision_dtype={self.vision_dtype!r}: expected one of {_DTYPES}")
        t, v = self.text, self.vision
        if t.hidden_size % t.num_attention_heads:
            raise ValueError(
                f"text.hidden_size {t.hidden_size} not divisible by num_attention_heads {t.num_attention_heads}"
            )
        if t.num_attention_heads % t.num_key_value_heads:
            raise ValueError("text.num_attention_heads must be a multiple of num_key_value_heads")
        if 2 * sum(t.mrope_section) != t.head_dim:
            raise ValueError(
                f"text.mrope_section {t.mrope_section} must sum to head_dim/2 = {t.head_dim // 2}"
            )
        if v.hidden_size % v.num_heads:
            raise ValueError(f"vision.hidden_size {v.hidden_size} not divisible by num_heads {v.num_heads}")
        if v.out_hidden_size != t.hidden_size:
            raise ValueError(
                f"vision.out_hidden_size {v.out_hidden_size} != text.hidden_size {t.hidden_size}"
            )
        bad = [i for i in v.fullatt_block_indexes if not 0 <= i < v.depth]
        if bad:
            raise ValueError(f"vision.fullatt_block_indexes {bad} outside [0, {v.depth})")
        self._check_special_token_ids()

    def special_token_ids(self) -> dict[str, int]:
        """{field name: id} of the special tokens the model and its inputs use (eos may be several)."""
        ids = {k: getattr(self, k) for k in _SPECIAL_ID_FIELDS if k != "eos_token_id"}
        ids.update({f"eos_token_id[{i}]": e for i, e in enumerate(self.eos_token_ids)})
        return {k: v for k, v in ids.items() if v is not None}

    def _check_special_token_ids(self):
        """Every special token id must index the embedding table: an id >= vocab_size (e.g. Qwen's 151655
        with a 32768 vocabulary) is clamped silently by our gather but fails in transformers."""
        vocab = self.text.vocab_size
        bad = {k: v for k, v in self.special_token_ids().items() if not 0 <= int(v) < vocab}
        if bad:
            listed = ", ".join(f"{k}={v}" for k, v in bad.items())
            raise ValueError(
                f"ModelConfig: special token ids outside the vocabulary [0, {vocab}): {listed}; a smaller "
                "vocabulary needs its own ids, e.g. qwen_special_token_ids(vocab_size - "
                f"{QWEN_SPECIAL_TOKENS}) as the tiny and bench-100m presets use"
            )

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        return (
            tuple(self.eos_token_id) if isinstance(self.eos_token_id, (list, tuple)) else (self.eos_token_id,)
        )

    def replace(self, **kw) -> "ModelConfig":
        return dataclasses.replace(self, **kw)

    # ---------------------------------------------------------------- HF config.json
    @classmethod
    def from_hf_dict(cls, hf: dict[str, Any], **policy) -> "ModelConfig":
        """Builds from a Qwen2.5-VL `config.json` dict (flat v4 layout or nested v5 `text_config`)."""
        model_type = hf.get("model_type")
        if model_type not in (None, "qwen2_5_vl"):
            raise ValueError(
                f"config.json: model_type={model_type!r}, expected 'qwen2_5_vl' "
                "(Qwen2-VL and text-only Qwen2 checkpoints are not this architecture)"
            )
        if "vision_config" not in hf:
            raise ValueError("config.json: missing key 'vision_config' (a text-only checkpoint?)")
        text_src = dict(hf)
        text_src.update(hf.get("text_config") or {})
        rope = dict(text_src.get("rope_scaling") or {})
        rope.update(text_src.get("rope_parameters") or {})
        tfields = {f.name for f in dataclasses.fields(TextConfig)}
        text_kw = {k: text_src[k] for k in tfields if k in text_src}
        text_kw["rope_theta"] = float(
            rope.get("rope_theta", text_src.get("rope_theta", TextConfig.rope_theta))
        )
        if "mrope_section" in rope:
            text_kw["mrope_section"] = tuple(rope["mrope_section"])
        vsrc = dict(hf["vision_config"])
        vfields = {f.name for f in dataclasses.fields(VisionConfig)}
        vision_kw = {k: vsrc[k] for k in vfields if k in vsrc}
        vrope = vsrc.get("rope_parameters") or {}
        if "rope_theta" in vrope:
            vision_kw["rope_theta"] = float(vrope["rope_theta"])
        if "fullatt_block_indexes" in vision_kw:
            vision_kw["fullatt_block_indexes"] = tuple(vision_kw["fullatt_block_indexes"])
        vision_kw.setdefault("out_hidden_size", text_kw.get("hidden_size", TextConfig.hidden_size))
        top = {}
        for k in _SPECIAL_ID_FIELDS:
            if text_src.get(k) is not None:
                top[k] = tuple(text_src[k]) if isinstance(text_src[k], list) else text_src[k]
        tie = hf.get("tie_word_embeddings", (hf.get("text_config") or {}).get("tie_word_embeddings", False))
        return cls(
            vision=VisionConfig(**vision_kw),
            text=TextConfig(**text_kw),
            tie_word_embeddings=bool(tie),
            **top,
            **policy,
        )

    def to_hf_dict(self, torch_dtype: str | None = None) -> dict[str, Any]:
        """The `config.json` transformers writes for Qwen2_5_VLForConditionalGeneration (nested v5 layout,
        with the text fields also flat at top level so older readers (v4, vLLM) find them)."""
        t, v = self.text, self.vision
        dtype = torch_dtype or self.param_dtype
        text = {
            "model_type": "qwen2_5_vl_text",
            "vocab_size": t.vocab_size,
            "hidden_size": t.hidden_size,
            "intermediate_size": t.intermediate_size,
            "num_hidden_layers": t.num_hidden_layers,
            "num_attention_heads": t.num_attention_heads,
            "num_key_value_heads": t.num_key_value_heads,
            "rms_norm_eps": t.rms_norm_eps,
            "hidden_act": t.hidden_act,
            "max_position_embeddings": t.max_position_embeddings,
            "rope_theta": t.rope_theta,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": t.rope_theta,
                "mrope_section": list(t.mrope_section),
            },
            "rope_scaling": {"type": "mrope", "mrope_section": list(t.mrope_section)},
            "use_sliding_window": False,
            "sliding_window": None,
            "max_window_layers": t.num_hidden_layers,
            "attention_dropout": 0.0,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": list(self.eos_token_id)
            if isinstance(self.eos_token_id, tuple)
            else self.eos_token_id,
            "dtype": dtype,
            "tie_word_embeddings": self.tie_word_embeddings,
        }
        vision = {
            "model_type": "qwen2_5_vl_vision",
            "depth": v.depth,
            "hidden_size": v.hidden_size,
            "intermediate_size": v.intermediate_size,
            "num_heads": v.num_heads,
            "in_channels": v.in_channels,
            "patch_size": v.patch_size,
            "temporal_patch_size": v.temporal_patch_size,
            "spatial_merge_size": v.spatial_merge_size,
            "window_size": v.window_size,
            "out_hidden_size": v.out_hidden_size,
            "fullatt_block_indexes": list(v.fullatt_block_indexes),
            "tokens_per_second": v.tokens_per_second,
            "hidden_act": v.hidden_act,
        }
        out = {"architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl"}
        out.update({k: val for k, val in text.items() if k != "model_type"})
        out.update(
            {
                "text_config": text,
                "vision_config": vision,
                "image_token_id": self.image_token_id,
                "video_token_id": self.video_token_id,
                "vision_start_token_id": self.vision_start_token_id,
                "vision_end_token_id": self.vision_end_token_id,
                "torch_dtype": dtype,
            }
        )
        return out

    @classmethod
    def from_pretrained(cls, path: str, **policy) -> "ModelConfig":
        f = os.path.join(path, "config.json") if os.path.isdir(path) else path
        if not os.path.exists(f):
            raise FileNotFoundError(
                f"{f}: no config.json (expected a Hugging Face Qwen2.5-VL model directory)"
            )
        try:
            with open(f) as fh:
                hf = json.load(fh)
        except json.JSONDecodeError as e:
            raise ValueError(f"{f}: not valid JSON ({e})") from None
        return cls.from_hf_dict(hf, **policy)

    def save_pretrained(self, path: str, torch_dtype: str | None = None) -> str:
        os.makedirs(path, exist_ok=True)
        f = os.path.join(path, "config.json")
        with open(f, "w") as fh:
            json.dump(self.to_hf_dict(torch_dtype), fh, indent=2)
        return f

    # ---------------------------------------------------------------- ml-collections
    def to_config_dict(self) -> ml_collections.ConfigDict:
        d = _lists(dataclasses.asdict(self))
        if d.get("vision_attention_span") is None:  # typed, so --config.model.vision_attention_span=N works
            d["vision_attention_span"] = ml_collections.config_dict.placeholder(int)
        return ml_collections.ConfigDict(d)

    @classmethod
    def from_config_dict(cls, cd: ml_collections.ConfigDict | dict) -> "ModelConfig":
        d = cd.to_dict() if hasattr(cd, "to_dict") else copy.deepcopy(dict(cd))
        vision = VisionConfig(**_tuples(d.pop("vision", {})))
        text = TextConfig(**_tuples(d.pop("text", {})))
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"model config: unknown keys {sorted(unknown)}")
        if isinstance(d.get("eos_token_id"), list):
            d["eos_token_id"] = tuple(d["eos_token_id"])
        return cls(vision=vision, text=text, **d)


def _lists(d):
    if isinstance(d, dict):
        return {k: _lists(v) for k, v in d.items()}
    return list(d) if isinstance(d, tuple) else d


def _tuples(d):
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


# ------------------------------------------------------------------------------ presets
def _hf(
    *,
    hidden,
    inter,
    layers,
    heads,
    kv,
    vocab=152064,
    tie=False,
    vdepth=32,
    vhidden=1280,
    vheads=16,
    vinter=3420,
    fullatt=(7, 15, 23, 31),
    max_pos=128000,
    mrope=(16, 24, 24),
    eps=1e-6,
    **extra,
):
    d = {
        "model_type": "qwen2_5_vl",
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "vocab_size": vocab,
        "tie_word_embeddings": tie,
        "rope_theta": 1000000.0,
        "rms_norm_eps": eps,
        "max_position_embeddings": max_pos,
        "rope_scaling": {"type": "mrope", "mrope_section": list(mrope)},
        "vision_config": {
            "depth": vdepth,
            "hidden_size": vhidden,
            "num_heads": vheads,
            "intermediate_size": vinter,
            "out_hidden_size": hidden,
            "fullatt_block_indexes": list(fullatt),
            "window_size": 112,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "tokens_per_second": 2,
        },
    }
    d.update(extra)
    return d


_QWEN7B = _hf(hidden=3584, inter=18944, layers=28, heads=28, kv=4)
_QWEN32B = _hf(hidden=5120, inter=27648, layers=64, heads=40, kv=8, vocab=152064, vinter=3456)


def qwen_special_token_ids(num_ranks: int) -> dict[str, int]:
    """Special token ids of a Qwen tokenizer cut to its first `num_ranks` BPE ranks
    (`build_qwen_tokenizer(vocab_size=num_ranks)`): the added tokens follow in Qwen's order from
    `num_ranks` (<|endoftext|> +0, <|im_start|> +1, <|im_end|> +2, ..., <|vision_start|> +9,
    <|vision_end|> +10, <|image_pad|> +12, <|video_pad|> +13). With all 151,643 ranks these are Qwen's ids."""
    return {
        "bos_token_id": num_ranks,
        "eos_token_id": num_ranks + 2,
        "vision_start_token_id": num_ranks + 9,
        "vision_end_token_id": num_ranks + 10,
        "image_token_id": num_ranks + 12,
        "video_token_id": num_ranks + 13,
    }


# Tiny models use a Qwen tokenizer cut to its first 1000 BPE ranks: <|endoftext|> 1000, <|im_end|> 1002,
# <|vision_start|> 1009, <|vision_end|> 1010, <|image_pad|> 1012, <|video_pad|> 1013.
TINY_TOKENIZER_RANKS = 1000
_TINY_IDS = qwen_special_token_ids(TINY_TOKENIZER_RANKS)
# bench-100m: vocabulary 32768 = 32746 BPE ranks + Qwen's 22 added tokens (ids 32746..32767), so every
# special id is inside the embedding table (as Qwen's own 151,665 ids are inside its 152,064 rows).
BENCH_VOCAB = 32768
BENCH_TOKENIZER_RANKS = BENCH_VOCAB - QWEN_SPECIAL_TOKENS
PRESETS: dict[str, dict[str, Any]] = {
    # Tiny: for tests and the CPU demo. Merge 2, two window + one full-attention vision blocks.
    "tiny": _hf(
        hidden=64,
        inter=128,
        layers=2,
        heads=4,
        kv=2,
        vocab=1024,
        tie=False,
        vdepth=3,
        vhidden=32,
        vheads=2,
        vinter=64,
        fullatt=(1,),
        mrope=(2, 3, 3),
        max_pos=4096,
        **_TINY_IDS,
    ),
    "tiny-tied": _hf(
        hidden=64,
        inter=128,
        layers=2,
        heads=4,
        kv=2,
        vocab=1024,
        tie=True,
        vdepth=3,
        vhidden=32,
        vheads=2,
        vinter=64,
        fullatt=(1,),
        mrope=(2, 3, 3),
        max_pos=4096,
        **_TINY_IDS,
    ),
    # The CPU demo (configs/demo.py): small enough to train three stages in minutes on 2 cores.
    "demo": _hf(
        hidden=128,
        inter=256,
        layers=2,
        heads=4,
        kv=2,
        vocab=1024,
        vdepth=2,
        vhidden=64,
        vheads=2,
        vinter=128,
        fullatt=(1,),
        mrope=(4, 6, 6),
        max_pos=4096,
        **_TINY_IDS,
    ),
    # ~100M parameters, Qwen2.5-VL-shaped: the CPU benchmark default.
    "bench-100m": _hf(
        hidden=512,
        inter=1408,
        layers=8,
        heads=8,
        kv=2,
        vocab=BENCH_VOCAB,
        vdepth=4,
        vhidden=256,
        vheads=4,
        vinter=688,
        fullatt=(3,),
        mrope=(8, 12, 12),
        **qwen_special_token_ids(BENCH_TOKENIZER_RANKS),
    ),
    "qwen2.5-vl-3b": _hf(
        hidden=2048, inter=11008, layers=36, heads=16, kv=2, vocab=151936, tie=True, vinter=3420
    ),
    "qwen2.5-vl-7b": _QWEN7B,
    "qwen2.5-vl-32b": _QWEN32B,
    "qwen2.5-vl-72b": _hf(hidden=8192, inter=29568, layers=80, heads=64, kv=8, vocab=152064, vinter=3456),
    "lingshu-7b": _QWEN7B,
    "lingshu-32b": _QWEN32B,
}


def preset(name: str, **policy) -> ModelConfig:
    """A named preset as a ModelConfig; `policy` sets dtype / attention_impl / remat fields."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; known: {sorted(PRESETS)}")
    return ModelConfig.from_hf_dict(PRESETS[name], **policy)


def preset_config_dict(name: str, **policy) -> ml_collections.ConfigDict:
    """A preset as an ml-collections ConfigDict, for experiment configs (`config.model = ...`)."""
    return preset(name, **policy).to_config_dict()
