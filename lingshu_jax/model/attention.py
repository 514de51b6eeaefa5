"""One attention function for the whole model, with a pluggable implementation.

`xla` (default, any backend): grouped-query attention in plain einsums, logits and softmax in float32.
`cudnn` (GPU): `jax.nn.dot_product_attention(implementation="cudnn")`, cuDNN's fused flash attention.
TPU splash/flash kernels plug in here too (not yet).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

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
