"""One attention function for the whole model, with a pluggable implementation.

`xla` (default, any backend): grouped-query attention in plain einsums, logits and softmax in float32.
`cudnn` (GPU): `jax.nn.dot_product_attention(implementation="cudnn")`, cuDNN's fused flash attention.
`splash` (TPU): Pallas splash attention (`model/splash.py`) for training, which takes segment ids instead
of a mask; masked calls (the KV-cache decode) run `xla`.
The vision tower's block-local forms (`window_block_attention`, `chunk_attention`, `banded_block_attention`)
call it on static block layouts: reshapes and static slices, never a gather of keys.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

IMPLEMENTATIONS = ("xla", "cudnn", "splash")


def dot_product_attention(q, k, v, mask, *, impl: str = "xla"):
    """q [B, Sq, H, Dh], k/v [B, Sk, KVH, Dh], mask [B, 1, Sq, Sk] bool (True = attend) -> [B, Sq, H, Dh].

    Rows whose keys are all masked (padding queries) produce a finite uniform average, never NaN.
    """
    if impl in ("xla", "splash"):
        return _xla_attention(q, k, v, mask)
    if impl == "cudnn":
        return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="cudnn")
    raise ValueError(f"attention_impl={impl!r}: expected one of {IMPLEMENTATIONS}")


def _xla_attention(q, k, v, mask):
    b, sq, h, d = q.shape
    kvh = k.shape[2]
    qg = q.reshape(b, sq, kvh, h // kvh, d)
    logits = jnp.einsum("bqhgd,bkhd->bhgqk", qg, k, preferred_element_type=jnp.float32) * (d**-0.5)
    if mask is not None:
        logits = jnp.where(mask[:, :, None], logits, jnp.finfo(jnp.float32).min)  # [B,1,1,Sq,Sk] broadcast
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    out = jnp.einsum("bhgqk,bkhd->bqhgd", probs, v)
    return out.reshape(b, sq, h, d)


def segment_mask(q_segments, k_segments, *, causal: bool, q_slots=None, k_slots=None):
    """[B, 1, Sq, Sk] bool: same nonzero segment (and key slot <= query slot when causal).

    Segment 0 marks padding for the text model. For vision, callers give every row a segment >= 0 and
    pass `causal=False`; padding rows there form their own segment.
    """
    same = q_segments[:, :, None] == k_segments[:, None, :]
    if causal:
        sq, sk = q_segments.shape[1], k_segments.shape[1]
        q_slots = jnp.arange(sq) if q_slots is None else q_slots
        k_slots = jnp.arange(sk) if k_slots is None else k_slots
        same = same & (k_slots[None, None, :] <= q_slots[..., :, None]) & (k_segments[:, None, :] != 0)
    return same[:, None]


def window_block_attention(q, k, v, segments, *, block: int, impl: str = "xla"):
    """Attention inside fixed blocks of `block` rows among rows of equal segment id: a reshape, no gathers.

    q, k, v [N, H, Dh] with N % block == 0; segments [N] int -> [N, H, Dh]. The vision stream holds each
    window as one whole block (`vision_inputs`), its padding rows in segments of their own.
    """
    n, h, d = q.shape
    nb = n // block
    blocks = lambda x: x.reshape(nb, block, h, d)
    seg = segments.reshape(nb, block)
    mask = segment_mask(seg, seg, causal=False)  # [nb, 1, block, block]
    return dot_product_attention(blocks(q), blocks(k), blocks(v), mask, impl=impl).reshape(n, h, d)


def chunk_attention(q, k, v, segments, *, chunks: int, impl: str = "xla"):
    """Attention among rows of equal segment id inside each of `chunks` equal chunks of the stream: a
    reshape to [chunks, N / chunks] (under sharding, local when the shards hold whole chunks).

    q, k, v [N, H, Dh] with N % chunks == 0; segments [N] int, -1 only on padding -> [N, H, Dh]. Exact when
    no segment crosses a chunk boundary (the host lays whole frames into chunks: `prepare_inputs`,
    `data.vision_chunks`); otherwise the result is NaN, never silently wrong."""
    n = q.shape[0]
    size = n // chunks
    out = window_block_attention(q, k, v, segments, block=size, impl=impl)
    if chunks == 1:
        return out
    ends, starts = segments[size - 1 : n - 1 : size], segments[size::size]  # both sides of each boundary
    return jnp.where(jnp.any((ends == starts) & (starts >= 0)), jnp.nan, out)


def banded_block_attention(q, k, v, segments, *, block: int, reach: int, impl: str = "xla"):
    """Attention among rows of equal segment id, each block of `block` queries seeing only the key blocks at
    the static offsets -reach..reach: [nb, block] queries x [nb, (2 reach + 1) block] keys, built by static
    pads and slices (no gathers; under sharding a halo exchange of `reach` blocks, not an all-gather).

    q, k, v [N, H, Dh] with N % block == 0; segments [N] int, -1 only on padding -> [N, H, Dh]. Exact when
    every segment lies within reach + 1 consecutive blocks (vision frames start on a block boundary, so a
    frame of at most (reach + 1) * block rows); otherwise the result is NaN, never silently wrong.
    """
    n, h, d = q.shape
    nb = n // block
    if reach >= nb - 1:  # the band covers the whole stream: one dense masked attention
        mask = segment_mask(segments[None], segments[None], causal=False)
        return dot_product_attention(q[None], k[None], v[None], mask, impl=impl)[0]

    def band(x, fill):  # [nb, block, ...] -> [nb, (2 reach + 1) block, ...]: blocks b - reach .. b + reach
        xp = jnp.pad(x, [(reach, reach)] + [(0, 0)] * (x.ndim - 1), constant_values=fill)
        return jnp.concatenate([xp[o : o + nb] for o in range(2 * reach + 1)], axis=1)

    seg = segments.reshape(nb, block)
    kseg = band(seg, -1)
    mask = (seg[:, :, None] == kseg[:, None, :])[:, None]  # [nb, 1, block, (2 reach + 1) block]
    kb, vb = band(k.reshape(nb, block, h, d), 0), band(v.reshape(nb, block, h, d), 0)
    out = dot_product_attention(q.reshape(nb, block, h, d), kb, vb, mask, impl=impl).reshape(n, h, d)
    reach_rows = (reach + 1) * block
    too_long = jnp.any((segments[:-reach_rows] == segments[reach_rows:]) & (segments[reach_rows:] >= 0))
    return jnp.where(too_long, jnp.nan, out)


def frame_attention(q, k, v, segments, *, block: int, span: int | None, chunks: int, impl: str = "xla"):
    """The vision stream's full attention (rows of equal frame segment), the cheaper exact static form:
    within each of `chunks` equal chunks (`chunk_attention`), when a chunk has no more rows than the band
    of key blocks that a frame of `span` rows reaches (`banded_block_attention`; span None: the whole
    stream), else that band. q, k, v [N, H, Dh], segments [N] -> [N, H, Dh]."""
    n = q.shape[0]
    reach = -(-(span or n) // block) - 1  # key blocks on each side that a frame of `span` rows can reach
    if chunks > 1 and n // chunks <= (2 * reach + 1) * block:
        return chunk_attention(q, k, v, segments, chunks=chunks, impl=impl)
    return banded_block_attention(q, k, v, segments, block=block, reach=reach, impl=impl)
