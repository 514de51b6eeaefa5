"""One attention function for the whole model, with a pluggable implementation.

`xla` (default, any backend): grouped-query attention in plain einsums, logits and softmax in float32.
`cudnn` (GPU): `jax.nn.dot_product_attention(implementation="cudnn")`, cuDNN's fused flash attention.
TPU splash/flash kernels plug in here too (not yet).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

IMPLEMENTATIONS = ("xla", "cudnn")


def dot_product_attention(q, k, v, mask, *, impl: str = "xla"):
    """q [B, Sq, H, Dh], k/v [B, Sk, KVH, Dh], mask [B, 1, Sq, Sk] bool (True = attend) -> [B, Sq, H, Dh].

    Rows whose keys are all masked (padding queries) produce a finite uniform average, never NaN.
    """
    if impl == "xla":
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


def local_segment_attention(q, k, v, segments, *, span: int, block: int, impl: str = "xla"):
    """Attention confined to contiguous segments of at most `span` rows, computed block by block.

    q, k, v [N, H, Dh]; segments [N] int (equal ids contiguous) -> [N, H, Dh], equal to attention under the
    dense `segment_mask`. Each block of `block` queries attends only the `block + 2 * span - 2` keys that
    start at its first query's segment start, which hold every key of every segment the block touches, so
    the cost is N * (block + 2 span) instead of N^2. If some segment is longer than `span` the result is
    NaN (never silently wrong).
    """
    n, h, d = q.shape
    nb = -(-n // block)
    pad = nb * block - n
    width = block + 2 * span - 2
    if width >= nb * block:  # the blocks would see everything anyway
        mask = segment_mask(segments[None], segments[None], causal=False)
        return dot_product_attention(q[None], k[None], v[None], mask, impl=impl)[0]
    if pad:  # padding rows: their own segment (-1), dropped at the end
        q, k, v = (jnp.pad(x, ((0, pad), (0, 0), (0, 0))) for x in (q, k, v))
        segments = jnp.pad(segments, (0, pad), constant_values=-1)
    starts, lengths = _segment_starts_and_lengths(segments)
    first = jnp.minimum(starts[::block], nb * block - width)  # [nb] key window start (clamped in range)
    keys = first[:, None] + jnp.arange(width)  # [nb, width]
    kb, vb, kseg = k[keys], v[keys], segments[keys]  # [nb, width, H, Dh], [nb, width]
    qseg = segments.reshape(nb, block)
    mask = (qseg[:, :, None] == kseg[:, None, :])[:, None]  # [nb, 1, block, width]
    out = dot_product_attention(q.reshape(nb, block, h, d), kb, vb, mask, impl=impl).reshape(-1, h, d)[:n]
    return jnp.where(jnp.max(lengths) > span, jnp.nan, out)


def _segment_starts_and_lengths(segments):
    """segments [N] (equal ids contiguous) -> (index of each row's segment start [N], its length [N])."""
    n = segments.shape[0]
    idx = jnp.arange(n)
    boundary = segments[1:] != segments[:-1]
    is_start = jnp.concatenate([jnp.array([True]), boundary])
    is_end = jnp.concatenate([boundary, jnp.array([True])])
    starts = lax.cummax(jnp.where(is_start, idx, 0))
    ends = lax.cummin(jnp.where(is_end, idx, n - 1), reverse=True)
    return starts, ends - starts + 1
