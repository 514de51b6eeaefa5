r"""Model FLOPs of a Qwen2.5-VL training step (vision tower included), decode FLOPs, and MFU.

Notation (from `ModelConfig`): text D=hidden, I=intermediate, L=layers, H=heads, K=KV heads,
Dh=D/H, V=vocab; vision Dv, Iv, Lv=depth, Hv heads (Dhv=Dv/Hv), P=patch_dim (1176), s=spatial_merge_size,
m=s^2 (patches per merged token), ws=window_merge_units (4), F=len(fullatt_block_indexes).

Matmul weights (a Dense [in, out] applied to one row costs 2*in*out FLOPs forward)::

    N_text_layer = D*H*Dh + 2*D*K*Dh + H*Dh*D + 3*D*I      q, k, v, o; gate, up, down
    N_text       = L * N_text_layer
    N_head       = D*V                                      lm_head (tied: the embedding, same matmul)
    N_patch      = P*Dv                                     patch_embed
    N_vblock     = 3*Dv*Dv + Dv*Dv + 3*Dv*Iv                qkv, proj; gate, up, down
    N_vis        = Lv * N_vblock
    N_merger     = (m*Dv)*(m*Dv) + (m*Dv)*D                 mlp_0, mlp_2; once per merged token

Work of one step: text rows given as segment lengths s_j (packed samples; a row of padding contributes
nothing) and images / videos as grids (t, h, w) in patches (HF `image_grid_thw`)::

    T  = sum_j s_j                  text tokens, image/video placeholder tokens included
    Np = sum_img t*h*w              patches;  Nm = Np / m merged tokens
    pairs_text = sum_j s_j*(s_j+1)/2                                 causal: query i sees keys 0..i
    pairs_win  = sum_img t * m^2 * (sum_a r_a^2) * (sum_b c_b^2)     window blocks, non-causal
    pairs_full = sum_img t * (h*w)^2                                 full blocks: per frame, non-causal

where r_a (c_b) split the h/s merged rows (w/s columns) into windows of ws: ws, ..., ws, remainder
(transformers' `get_window_index`; a window of r x c merged units holds m*r*c patches).

Forward FLOPs by entry::

    patch_embed     2 * N_patch * Np
    vision_blocks   2 * N_vis * Np
    vision_attention 4 * Hv*Dhv * ((Lv - F) * pairs_win + F * pairs_full)     QK^T and AV, 2*Dhv each
    merger_0/_2     2 * (m*Dv)*(m*Dv) * Nm,  2 * (m*Dv)*D * Nm              (sum: 2 * N_merger * Nm)
    text_layers     2 * N_text * T
    text_attention  4 * L * H*Dh * pairs_text
    lm_head         2 * N_head * T

Training: the backward pass of Y = X W costs one matmul for dW (when W trains) and one for dX (when any
trainable parameter lies before it, nearer the input); the attention matmuls have no weights, their
backward is 2x forward whenever gradients flow through them. Multipliers per entry, with the parts
"vision" (patch_embed, blocks), "merger", "text" (embed_tokens, layers, lm_head)::

    weight matmul:    1 + [own part trainable] + [a trainable part lies before it]
    attention:        1 + 2 * [a trainable part lies before it]

"Before": patch_embed: nothing (pixels); vision blocks and their attention: vision; merger mlp_0:
vision; mlp_2: vision, merger; text layers, text attention, lm_head: vision, merger, text (embed_tokens).
With everything trainable (Lingshu stages 2-3) this is the usual 3x forward except patch_embed (2x)::

    6*(N_text + N_head)*T + 12*L*H*Dh*pairs_text + 4*N_patch*Np + 6*N_vis*Np + 6*N_merger*Nm
      + 12*Hv*Dhv*((Lv - F)*pairs_win + F*pairs_full)

Stage 1 (LLM frozen): text layers and lm_head 2x (forward + dX back to the image tokens), text attention
3x. `trainable=()` gives forward FLOPs (prefill).

Not counted: embedding lookup, norms, biases, activations, softmax, RoPE, the loss; recomputation under
remat (these are model FLOPs, not hardware FLOPs); padding tokens and padding patches. Text attention
counts s(s+1)/2 pairs (diagonal included); MaxText's s^2/2 differs by s/2 pairs per segment.

Decode, one new token attending to `context_len` keys (itself included), text only:
``2*(N_text + N_head) + 4*L*H*Dh*context_len``.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence, Union

from lingshu_jax.model.config import ModelConfig, VisionConfig

PARTS = ("vision", "merger", "text")  # input -> output order
TextLens = Union[tuple[int, int], Sequence[Sequence[int]]]

# entry: (part, kind, parts that lie before it)
_ENTRIES = {
    "patch_embed": ("vision", "weight", ()),
    "vision_blocks": ("vision", "weight", ("vision",)),
    "vision_attention": ("vision", "attention", ("vision",)),
    "merger_0": ("merger", "weight", ("vision",)),
    "merger_2": ("merger", "weight", ("vision", "merger")),
    "text_layers": ("text", "weight", PARTS),
    "text_attention": ("text", "attention", PARTS),
    "lm_head": ("text", "weight", PARTS),
}


# ------------------------------------------------------------------------------ parameter counts
def matmul_params(cfg: ModelConfig) -> dict[str, int]:
    """Matmul weight counts by entry (biases, norms and the embedding lookup excluded)."""
    t, v = cfg.text, cfg.vision
    d, dh, m = t.hidden_size, t.head_dim, v.merge_unit
    layer = (
        d * t.num_attention_heads * dh
        + 2 * d * t.num_key_value_heads * dh
        + t.num_attention_heads * dh * d
        + 3 * d * t.intermediate_size
    )
    vblock = 4 * v.hidden_size**2 + 3 * v.hidden_size * v.intermediate_size
    return {
        "text_layers": t.num_hidden_layers * layer,
        "lm_head": d * t.vocab_size,
        "patch_embed": v.patch_dim * v.hidden_size,
        "vision_blocks": v.depth * vblock,
        "merger_0": (m * v.hidden_size) ** 2,
        "merger_2": m * v.hidden_size * d,
    }


def param_count(cfg: ModelConfig) -> dict[str, int]:
    """All parameters of the docs/DESIGN.md tree: {'text', 'vision', 'total'} (embeddings, norms, biases
    included; lm_head only when untied)."""
    t, v = cfg.text, cfg.vision
    d, dh, h, k = t.hidden_size, t.head_dim, t.num_attention_heads, t.num_key_value_heads
    layer = (
        2 * d + (d * h * dh + h * dh) + 2 * (d * k * dh + k * dh) + h * dh * d + 3 * d * t.intermediate_size
    )
    text = (
        t.vocab_size * d
        + t.num_hidden_layers * layer
        + d
        + (0 if cfg.tie_word_embeddings else d * t.vocab_size)
    )
    dv, iv, m = v.hidden_size, v.intermediate_size, v.merge_unit
    block = 2 * dv + (3 * dv * dv + 3 * dv) + (dv * dv + dv) + 2 * (dv * iv + iv) + (iv * dv + dv)
    merger = dv + (m * dv) ** 2 + m * dv + m * dv * d + d
    vision = v.patch_dim * dv + v.depth * block + merger
    return {"text": text, "vision": vision, "total": text + vision}


# ------------------------------------------------------------------------------ work of a step
def _segments(text_seq_lens: TextLens) -> list[int]:
    """(batch, seq) or [[segment lengths of row 0], [row 1], ...] -> flat list of segment lengths."""
    x = list(text_seq_lens)
    if len(x) == 2 and all(isinstance(a, int) for a in x):
        return [int(x[1])] * int(x[0])
    if any(isinstance(r, int) for r in x):
        raise ValueError(
            f"text_seq_lens: expected (batch, seq) or a list of per-row segment lists, got {x!r}"
        )
    segs = [int(s) for row in x for s in row]
    if any(s < 0 for s in segs):
        raise ValueError(f"text_seq_lens: negative segment length in {x!r}")
    return segs


def _chunks(n: int, size: int) -> list[int]:
    return [size] * (n // size) + ([n % size] if n % size else [])


def vision_attention_pairs(v: VisionConfig, grid: Sequence[int]) -> tuple[int, int]:
    """(q, k) pairs one window-attention block and one full-attention block compute for an image or
    video of `grid` = (t, h, w) patches: (t * sum_windows len^2, t * (h*w)^2)."""
    t, h, w = (int(g) for g in grid)
    s = v.spatial_merge_size
    if h % s or w % s:
        raise ValueError(f"vision grid {tuple(grid)}: h and w must be multiples of spatial_merge_size={s}")
    ws = v.window_merge_units
    rows = sum(r * r for r in _chunks(h // s, ws))
    cols = sum(c * c for c in _chunks(w // s, ws))
    return t * v.merge_unit**2 * rows * cols, t * (h * w) ** 2


def forward_flops(
    cfg: ModelConfig, text_seq_lens: TextLens, vision_grids: Iterable[Sequence[int]] = ()
) -> dict[str, int]:
    """Forward FLOPs per entry of `_ENTRIES` (see the module docstring)."""
    t, v = cfg.text, cfg.vision
    n = matmul_params(cfg)
    segs = _segments(text_seq_lens)
    tokens, pairs_text = sum(segs), sum(s * (s + 1) // 2 for s in segs)
    grids = [tuple(g) for g in vision_grids]
    patches = sum(a * b * c for a, b, c in grids)
    if patches % v.merge_unit:
        raise ValueError(f"vision grids {grids}: {patches} patches is not a multiple of {v.merge_unit}")
    n_full = len(v.fullatt_block_indexes)
    vis_pairs = 0
    for g in grids:
        win, full = vision_attention_pairs(v, g)
        vis_pairs += (v.depth - n_full) * win + n_full * full
    merged = patches // v.merge_unit
    return {
        "patch_embed": 2 * n["patch_embed"] * patches,
        "vision_blocks": 2 * n["vision_blocks"] * patches,
        "vision_attention": 4 * v.num_heads * v.head_dim * vis_pairs,
        "merger_0": 2 * n["merger_0"] * merged,
        "merger_2": 2 * n["merger_2"] * merged,
        "text_layers": 2 * n["text_layers"] * tokens,
        "text_attention": 4 * t.num_hidden_layers * t.num_attention_heads * t.head_dim * pairs_text,
        "lm_head": 2 * n["lm_head"] * tokens,
    }


def multipliers(trainable: Iterable[str] = PARTS) -> dict[str, int]:
    """Training cost / forward cost per entry for the given trainable parts (see the module docstring)."""
    trainable = set(trainable)
    unknown = trainable - set(PARTS)
    if unknown:
        raise ValueError(f"trainable: unknown parts {sorted(unknown)}; known: {PARTS}")
    out = {}
    for name, (part, kind, before) in _ENTRIES.items():
        flows = int(any(p in trainable for p in before))
        out[name] = 1 + 2 * flows if kind == "attention" else 1 + int(part in trainable) + flows
    return out


def train_flops_breakdown(
    cfg: ModelConfig,
    text_seq_lens: TextLens,
    vision_grids: Iterable[Sequence[int]] = (),
    trainable: Iterable[str] = PARTS,
) -> dict[str, int]:
    """Training FLOPs of one step per entry, plus 'text', 'vision' (tower + merger) and 'total'."""
    fwd = forward_flops(cfg, text_seq_lens, vision_grids)
    mult = multipliers(trainable)
    out = {k: fwd[k] * mult[k] for k in fwd}
    out["text"] = out["text_layers"] + out["text_attention"] + out["lm_head"]
    out["vision"] = sum(
        out[k] for k in ("patch_embed", "vision_blocks", "vision_attention", "merger_0", "merger_2")
    )
    out["total"] = out["text"] + out["vision"]
    return out


def train_flops_per_step(
    cfg: ModelConfig,
    text_seq_lens: TextLens,
    vision_grids: Iterable[Sequence[int]] = (),
    trainable: Iterable[str] = PARTS,
) -> int:
    """Model FLOPs of one training step (all micro-batches, all devices). `text_seq_lens`: (batch, seq)
    or per-row lists of segment lengths; `vision_grids`: (t, h, w) patch grids of every image / video;
    `trainable`: subset of ('vision', 'merger', 'text') (Lingshu stage 1: ('vision', 'merger'))."""
    return train_flops_breakdown(cfg, text_seq_lens, vision_grids, trainable)["total"]


def decode_flops_per_token(cfg: ModelConfig, context_len: int) -> int:
    """Forward FLOPs to generate one token whose query attends to `context_len` cached keys (itself
    included): ``2*(N_text + N_head) + 4*L*H*Dh*context_len``."""
    t, n = cfg.text, matmul_params(cfg)
    attn = 4 * t.num_hidden_layers * t.num_attention_heads * t.head_dim * int(context_len)
    return 2 * (n["text_layers"] + n["lm_head"]) + attn


# ------------------------------------------------------------------------------ utilisation
# Dense bf16 peak FLOP/s per device, from vendor data sheets (matched against `jax.Device.device_kind`).
# First match wins: specific names before their prefixes ("TPU v5 lite" = v5e, "TPU v5" = v5p).
PEAK_BF16_FLOPS = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("A100", 312e12),
    ("TPU v4", 275e12),
    ("TPU v5 lite", 197e12),
    ("TPU v5e", 197e12),
    ("TPU v5", 459e12),
    ("TPU v6", 918e12),
)


def peak_flops_per_device(device_kind: str) -> Optional[float]:
    """Dense bf16 peak FLOP/s for a `device_kind` string, or None when unknown (e.g. CPU)."""
    for key, value in PEAK_BF16_FLOPS:
        if key.lower() in device_kind.lower():
            return value
    return None


def mfu(flops: float, step_time: float, n_devices: int, peak_flops_per_device: float) -> float:
    """Model FLOPs utilisation: ``flops / (step_time * n_devices * peak_flops_per_device)``."""
    if step_time <= 0 or n_devices <= 0 or peak_flops_per_device <= 0:
        raise ValueError(
            f"mfu: step_time={step_time}, n_devices={n_devices}, "
            f"peak_flops_per_device={peak_flops_per_device} must all be positive"
        )
    return float(flops) / (step_time * n_devices * peak_flops_per_device)


def measured_peak_flops(n: int = 2048, repeats: int = 5, dtype: str = "float32") -> float:
    """FLOP/s of an n x n x n matmul on the first device (best of `repeats`): the CPU "peak" for MFU.

    Vendor peaks are used for accelerators; on a CPU the achievable matmul rate depends on the machine, so
    we measure it on the same machine, in the same process, as the run being reported. The operand is random
    normal: constant data (ones, zeros) runs measurably faster on GPUs (less switching power) than real data.
    """
    import time

    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best
