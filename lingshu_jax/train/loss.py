"""Token-level cross entropy for next-token prediction, as sums so accumulation can weight by tokens."""

from __future__ import annotations

import jax
import jax.numpy as jnp

IGNORE = -100


def next_token_targets(labels, segment_ids):
    """labels [B, S] aligned with input_ids (transformers' convention) -> targets [B, S] for the logits at
    each position. A packed segment never predicts the first token of the next segment."""
    nxt = jnp.concatenate([labels[:, 1:], jnp.full_like(labels[:, :1], IGNORE)], axis=1)
    seg_next = jnp.concatenate([segment_ids[:, 1:], jnp.zeros_like(segment_ids[:, :1])], axis=1)
    return jnp.where((seg_next == segment_ids) & (segment_ids != 0), nxt, IGNORE)


def cross_entropy_sums(logits, targets):
    """logits [B, S, V], targets [B, S] (IGNORE = skip) -> (sum of token losses [], token count [])."""
    valid = targets != IGNORE
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, jnp.where(valid, targets, 0)[..., None], axis=-1)[..., 0]
    return jnp.sum(jnp.where(valid, nll, 0.0)), jnp.sum(valid).astype(jnp.float32)


def per_segment_losses(logits, targets, segment_ids, num_segments: int):
    """Mean loss of each packed segment: [B, num_segments] (segments numbered 1..num_segments)."""
    valid = targets != IGNORE
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, jnp.where(valid, targets, 0)[..., None], axis=-1)[..., 0]
    onehot = (segment_ids[..., None] == jnp.arange(1, num_segments + 1)) & valid[..., None]  # [B, S, K]
    sums = jnp.einsum("bs,bsk->bk", jnp.where(valid, nll, 0.0), onehot.astype(jnp.float32))
    return sums / jnp.maximum(onehot.sum(1), 1)
