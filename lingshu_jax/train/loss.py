"""Token-level cross entropy for next-token prediction, as sums so accumulation can weight by tokens.

The per-token loss is ``nll = logsumexp(logits) - logits[target]`` (`token_nll`), computed in float32
without materialising the [tokens, vocab] log-softmax, with a hand-written gradient
``(softmax(logits) - onehot(target)) * g``: one elementwise pass over the logits, no scatter into a zeroed
[tokens, vocab] buffer (the gradient of a gather) and no saved exp. Logits are flattened to 2-D
[tokens, vocab] first. Measured on XLA:CPU at bench-100m's lm_head shapes, see `scripts/bench_loss_head.py`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

IGNORE = -100


def next_token_targets(labels, segment_ids):
    """labels [B, S] aligned with input_ids (transformers' convention) -> targets [B, S] for the logits at
    each position. A packed segment never predicts the first token of the next segment."""
    nxt = jnp.concatenate([labels[:, 1:], jnp.full_like(labels[:, :1], IGNORE)], axis=1)
    seg_next = jnp.concatenate([segment_ids[:, 1:], jnp.zeros_like(segment_ids[:, :1])], axis=1)
    return jnp.where((seg_next == segment_ids) & (segment_ids != 0), nxt, IGNORE)


# ------------------------------------------------------------------------------ per-token loss
@jax.custom_vjp
def token_nll(logits, targets):
    """logits [..., V] (any float dtype), targets [...] int in [0, V) -> nll [...] float32.

    Equals ``-take_along_axis(log_softmax(logits.astype(f32)), targets)``; the gradient w.r.t. logits has
    the logits' dtype (targets get none)."""
    return _nll_fwd(logits, targets)[0]


def _logsumexp(x32):
    """x32 [..., V] float32 -> [...]: max, then sum of exp(x - max) (one fused reduction)."""
    m = jnp.max(x32, axis=-1)
    return jnp.log(jnp.sum(jnp.exp(x32 - m[..., None]), axis=-1)) + m


def _nll_fwd(logits, targets):
    x32 = logits.astype(jnp.float32)
    lse = _logsumexp(x32)  # [...]
    picked = jnp.take_along_axis(x32, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]  # [...]
    return lse - picked, (logits, targets, lse)


def _nll_bwd(res, g):
    logits, targets, lse = res
    x32 = logits.astype(jnp.float32)
    iota = jax.lax.broadcasted_iota(jnp.int32, x32.shape, x32.ndim - 1)
    onehot = (iota == targets[..., None]).astype(jnp.float32)
    dlogits = (jnp.exp(x32 - lse[..., None]) - onehot) * g[..., None]  # [..., V], one pass
    return dlogits.astype(logits.dtype), np.zeros(np.shape(targets), jax.dtypes.float0)


token_nll.defvjp(_nll_fwd, _nll_bwd)


def masked_token_nll(logits, targets):
    """logits [B, S, V], targets [B, S] (IGNORE = skip) -> (nll [B, S] float32, 0 where ignored; valid [B, S])."""
    valid = targets != IGNORE
    v = logits.shape[-1]
    flat = logits.reshape(-1, v)  # [B*S, V]: 2-D, as the lm_head matmul produced it
    nll = token_nll(flat, jnp.where(valid, targets, 0).reshape(-1)).reshape(targets.shape)
    return jnp.where(valid, nll, 0.0), valid


# ------------------------------------------------------------------------------ reductions
def cross_entropy_sums(logits, targets):
    """logits [B, S, V], targets [B, S] (IGNORE = skip) -> (sum of token losses [], token count [])."""
    nll, valid = masked_token_nll(logits, targets)
    return jnp.sum(nll), jnp.sum(valid).astype(jnp.float32)


def per_segment_losses(logits, targets, segment_ids, num_segments: int):
    """Mean loss of each packed segment: [B, num_segments] (segments numbered 1..num_segments)."""
    nll, valid = masked_token_nll(logits, targets)
    onehot = (segment_ids[..., None] == jnp.arange(1, num_segments + 1)) & valid[..., None]  # [B, S, K]
    sums = jnp.einsum("bs,bsk->bk", nll, onehot.astype(jnp.float32))
    return sums / jnp.maximum(onehot.sum(1), 1)
