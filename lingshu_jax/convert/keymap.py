"""Hugging Face key <-> our parameter path, with the per-tensor transform, for every tensor.

The parameter tree is docs/DESIGN.md's table: Flax Linen `params`, per-layer tensors stacked on axis 0
(`nn.scan`), Dense kernels `[in, out]`. One `ParamSpec` describes one leaf of that tree: its path, the
HF key (a template with `{i}` for stacked leaves), the number of stacked layers, and the transform:

  identity   HF tensor == ours                              (norm scales, biases, embedding)
  transpose  ours = hf.T          hf [out, in] -> [in, out]  (Linear weights)
  patch      ours = hf.reshape(Dv, -1).T   [Dv, C, T, P, P] -> [C*T*P*P, Dv]   (vision patch embed)

Keys are written in the Hub layout that `save_pretrained` writes (transformers 4.x and 5.x alike):
`model.*`, `visual.*`, `lm_head.weight`. On input we also accept the in-memory names of
transformers >= 4.52 (`model.language_model.*`, `model.visual.*`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Iterable, Iterator

import numpy as np

from lingshu_jax.model.config import ModelConfig

Path = tuple[str, ...]
KINDS = ("identity", "transpose", "patch")

# In-memory (transformers >= 4.52) prefix -> saved Hub prefix.
_INPUT_PREFIXES = (("model.language_model.", "model."), ("model.visual.", "visual."))
# Non-persistent rotary buffers that some old checkpoints carry; they hold no learned weights.
_IGNORED_KEY = re.compile(r"(^|\.)(rotary_emb|rotary_pos_emb)\.inv_freq$")


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One leaf of our parameter tree and where it lives in a HF checkpoint."""

    path: Path  # ("model", "layers", "mlp", "gate_proj", "kernel")
    hf_key: str  # "model.layers.{i}.mlp.gate_proj.weight" ({i} only when stacked)
    hf_shape: tuple[int, ...]  # shape of ONE HF tensor (one layer)
    kind: str = "identity"  # see KINDS
    num_layers: int | None = None  # stacked on axis 0 when not None

    @property
    def name(self) -> str:
        return "/".join(self.path)

    @property
    def layer_shape(self) -> tuple[int, ...]:
        """Our shape of one layer's slice."""
        if self.kind == "transpose":
            return tuple(reversed(self.hf_shape))
        if self.kind == "patch":
            return (math.prod(self.hf_shape[1:]), self.hf_shape[0])
        return tuple(self.hf_shape)

    @property
    def shape(self) -> tuple[int, ...]:
        """Our full leaf shape ([L, ...] when stacked)."""
        return self.layer_shape if self.num_layers is None else (self.num_layers,) + self.layer_shape

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def hf_keys(self) -> list[str]:
        """HF keys of this leaf, one per layer (layer order)."""
        if self.num_layers is None:
            return [self.hf_key]
        return [self.hf_key.format(i=i) for i in range(self.num_layers)]


def param_specs(cfg: ModelConfig) -> list[ParamSpec]:
    """Every leaf of the DESIGN.md tree for `cfg`, vision first, then text, then lm_head."""
    v, t = cfg.vision, cfg.text
    dv, iv, lv = v.hidden_size, v.intermediate_size, v.depth
    dm = dv * v.merge_unit  # merger input: 4 * Dv
    d, inter, lt = t.hidden_size, t.intermediate_size, t.num_hidden_layers
    q, kv = t.num_attention_heads * t.head_dim, t.num_key_value_heads * t.head_dim
    specs = [
        ParamSpec(
            ("visual", "patch_embed", "kernel"),
            "visual.patch_embed.proj.weight",
            (dv, v.in_channels, v.temporal_patch_size, v.patch_size, v.patch_size),
            "patch",
        )
    ]
    vb = lambda sub, leaf, hf, shape, kind="identity": ParamSpec(
        ("visual", "blocks") + sub + (leaf,), f"visual.blocks.{{i}}.{hf}", shape, kind, lv
    )
    specs += [vb(("norm1",), "scale", "norm1.weight", (dv,)), vb(("norm2",), "scale", "norm2.weight", (dv,))]
    for name, (n_out, n_in) in {
        "attn.qkv": (3 * dv, dv),
        "attn.proj": (dv, dv),
        "mlp.gate_proj": (iv, dv),
        "mlp.up_proj": (iv, dv),
        "mlp.down_proj": (dv, iv),
    }.items():
        sub = tuple(name.split("."))
        specs += [
            vb(sub, "kernel", f"{name}.weight", (n_out, n_in), "transpose"),
            vb(sub, "bias", f"{name}.bias", (n_out,)),
        ]
    specs += [ParamSpec(("visual", "merger", "ln_q", "scale"), "visual.merger.ln_q.weight", (dv,))]
    for idx, (n_out, n_in) in ((0, (dm, dm)), (2, (d, dm))):
        specs += [
            ParamSpec(
                ("visual", "merger", f"mlp_{idx}", "kernel"),
                f"visual.merger.mlp.{idx}.weight",
                (n_out, n_in),
                "transpose",
            ),
            ParamSpec(("visual", "merger", f"mlp_{idx}", "bias"), f"visual.merger.mlp.{idx}.bias", (n_out,)),
        ]
    specs += [
        ParamSpec(("model", "embed_tokens", "embedding"), "model.embed_tokens.weight", (t.vocab_size, d))
    ]
    tl = lambda sub, leaf, hf, shape, kind="identity": ParamSpec(
        ("model", "layers") + sub + (leaf,), f"model.layers.{{i}}.{hf}", shape, kind, lt
    )
    specs += [tl(("input_layernorm",), "scale", "input_layernorm.weight", (d,))]
    for name, n_out in (("q_proj", q), ("k_proj", kv), ("v_proj", kv)):
        specs += [
            tl(("self_attn", name), "kernel", f"self_attn.{name}.weight", (n_out, d), "transpose"),
            tl(("self_attn", name), "bias", f"self_attn.{name}.bias", (n_out,)),
        ]
    specs += [
        tl(("self_attn", "o_proj"), "kernel", "self_attn.o_proj.weight", (d, q), "transpose"),
        tl(("post_attention_layernorm",), "scale", "post_attention_layernorm.weight", (d,)),
    ]
    for name, shape in (("gate_proj", (inter, d)), ("up_proj", (inter, d)), ("down_proj", (d, inter))):
        specs += [tl(("mlp", name), "kernel", f"mlp.{name}.weight", shape, "transpose")]
    specs += [ParamSpec(("model", "norm", "scale"), "model.norm.weight", (d,))]
    if not cfg.tie_word_embeddings:
        specs += [ParamSpec(("lm_head", "kernel"), "lm_head.weight", (t.vocab_size, d), "transpose")]
    return specs


def hf_key_index(specs: Iterable[ParamSpec]) -> dict[str, tuple[ParamSpec, int | None]]:
    """HF key -> (spec, layer index or None)."""
    out = {}
    for s in specs:
        for i, k in enumerate(s.hf_keys()):
            out[k] = (s, None if s.num_layers is None else i)
    return out


# ------------------------------------------------------------------------------ transforms
def to_ours(spec: ParamSpec, hf: np.ndarray) -> np.ndarray:
    """HF rows (a whole tensor or a block of axis-0 rows) -> our layout, as a view; see `ours_index`."""
    if spec.kind == "transpose":
        return hf.T  # [n_out, in] -> [in, n_out]
    if spec.kind == "patch":
        return hf.reshape(hf.shape[0], -1).T  # [n, 3, 2, 14, 14] -> [1176, n]
    return hf


def ours_index(spec: ParamSpec, start: int, stop: int) -> tuple[slice, ...]:
    """Where HF rows [start:stop] (axis 0) land in our per-layer array."""
    rows = slice(start, stop)
    return (rows,) if spec.kind == "identity" else (slice(None), rows)


def to_hf(spec: ParamSpec, ours: np.ndarray) -> np.ndarray:
    """Our layout for one layer -> the HF tensor, as a view (the writer makes it contiguous blockwise)."""
    if spec.kind == "transpose":
        return ours.T
    if spec.kind == "patch":
        return ours.T.reshape(spec.hf_shape)  # splitting an axis needs no copy
    return ours


def hf_slice_for(spec: ParamSpec, idx: tuple[slice, ...]) -> tuple[tuple[slice, ...], Any]:
    """Our per-layer index `idx` -> (index to read from the HF tensor, function finishing the slice).

    Only the rows/columns needed are read from disk: a transposed slice reads `hf[cols, rows]`; the patch
    embed reads whole patches for the selected output channels, then picks the requested rows.
    """
    if spec.kind == "transpose":
        return (idx[1], idx[0]), lambda x: x.T
    if spec.kind == "patch":
        rows = idx[0]
        return (idx[1],), lambda x: x.reshape(x.shape[0], -1)[:, rows].T
    return tuple(idx), lambda x: x


# ------------------------------------------------------------------------------ HF key names
def normalize_hf_key(key: str) -> str:
    """In-memory transformers >= 4.52 names -> saved Hub names; other keys unchanged."""
    for src, dst in _INPUT_PREFIXES:
        if key.startswith(src):
            return dst + key[len(src) :]
    return key


def is_ignored_key(key: str) -> bool:
    """Keys that carry no weights (rotary inv_freq buffers)."""
    return bool(_IGNORED_KEY.search(key))


_QWEN2_VL = re.compile(r"^visual\.(blocks\.\d+\.(mlp\.fc[12]\.|norm[12]\.bias)|merger\.ln_q\.bias)")


def check_architecture(keys: Iterable[str], where: str) -> None:
    """Raises ValueError naming a key when the checkpoint is plainly not Qwen2.5-VL.

    Qwen2-VL's vision blocks use LayerNorm (with bias) and an `mlp.fc1`/`fc2` GELU MLP; a text-only
    Qwen2/Qwen2.5 checkpoint has `model.layers.*` but no `visual.*` tensor at all.
    """
    keys = sorted(keys)
    for k in keys:
        if _QWEN2_VL.match(k):
            raise ValueError(
                f"{where}: unexpected key {k!r}: this looks like a Qwen2-VL checkpoint (vision blocks with "
                "LayerNorm biases and an mlp.fc1/fc2 MLP); only Qwen2.5-VL (Qwen2_5_VLForConditionalGeneration: "
                "RMSNorm + SwiGLU vision blocks) is supported"
            )
    if not any(k.startswith("visual.") for k in keys):
        text = next((k for k in keys if k.startswith("model.layers.")), keys[0] if keys else "<none>")
        raise ValueError(
            f"{where}: missing key 'visual.patch_embed.proj.weight' (no 'visual.*' tensor at all, but key "
            f"{text!r} is present): this looks like a text-only Qwen2/Qwen2.5 checkpoint, not Qwen2.5-VL"
        )


# ------------------------------------------------------------------------------ trees
def tree_get(tree: Any, path: Path) -> Any:
    for p in path:
        tree = tree[p]
    return tree


def tree_set(tree: dict, path: Path, value: Any) -> None:
    for p in path[:-1]:
        tree = tree.setdefault(p, {})
    tree[path[-1]] = value


def tree_paths(tree: Any, prefix: Path = ()) -> Iterator[Path]:
    """Paths of the leaves of a nested mapping (Flax FrozenDict / dict)."""
    if hasattr(tree, "items") and not hasattr(tree, "shape"):
        for k, v in tree.items():
            yield from tree_paths(v, prefix + (str(k),))
    else:
        yield prefix


def param_spec_tree(cfg: ModelConfig, dtype: Any = np.float32) -> dict:
    """The key map's parameter tree (`param_specs`) as `jax.ShapeDtypeStruct`s of one dtype, built from the
    specs alone (no Flax init: cheap at any size). `model.vlm.abstract_params` is the Flax model's own."""
    import jax  # local: keymap itself needs no jax

    tree: dict = {}
    for s in param_specs(cfg):
        tree_set(tree, s.path, jax.ShapeDtypeStruct(s.shape, np.dtype(dtype)))
    return tree
