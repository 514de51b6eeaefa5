"""Pure step functions: loss of a batch, and (with the optimizer) the jitted train / eval steps."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lingshu_jax.train.head_loss import head_nll_sum, head_token_nll
from lingshu_jax.train.loss import IGNORE, next_token_targets


def _hidden_and_head(model, params, batch):
    """(final hidden [B, S, D], head kernel, head_loss options, next-token targets [B, S] with IGNORE).
    The model: `apply(.., batch, return_hidden=True) -> (hidden, cache)` and a `vocab_head` method."""
    variables = {"params": params}
    hidden, _ = model.apply(variables, batch, return_hidden=True)
    kernel, options = model.apply(variables, method=type(model).vocab_head)
    return hidden, kernel, options, next_token_targets(batch["labels"], batch["segment_ids"])


def loss_sums(model, params, batch):
    """(sum of next-token losses over labelled tokens, number of such tokens) for one (micro-)batch.

    The vocabulary head and the cross entropy run together in chunks of `config.loss_chunk_len` positions
    (train/head_loss.py): the [tokens, vocab] logits are never materialised, in forward or backward."""
    hidden, kernel, options, targets = _hidden_and_head(model, params, batch)
    valid = targets != IGNORE
    total = head_nll_sum(hidden, kernel, targets, valid, **options)
    return total, jnp.sum(valid).astype(jnp.float32)


def token_losses(model, params, batch):
    """Per-token next-token loss and argmax hit, chunked like `loss_sums` (no gradients: evaluation) ->
    (nll [B, S] float32, 0 where not labelled; hit [B, S] bool, argmax == target; valid [B, S] bool)."""
    hidden, kernel, options, targets = _hidden_and_head(model, params, batch)
    valid = targets != IGNORE
    nll, argmax = head_token_nll(hidden, kernel, jnp.where(valid, targets, 0), **options)
    return jnp.where(valid, nll, 0.0), argmax == targets, valid


def mean_loss(model, params, batch):
    total, count = loss_sums(model, params, batch)
    return total / jnp.maximum(count, 1.0)


def loss_and_grads(model, params, batch):
    """Token-mean loss and its gradients (no optimizer): the quantity sharding must not change."""
    return jax.value_and_grad(lambda p: mean_loss(model, p, batch))(params)
