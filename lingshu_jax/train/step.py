"""Pure step functions: loss of a batch, and (with the optimizer) the jitted train / eval steps."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lingshu_jax.train.loss import cross_entropy_sums, next_token_targets


def loss_sums(model, params, batch):
    """(sum of next-token losses over labelled tokens, number of such tokens) for one (micro-)batch."""
    logits, _ = model.apply({"params": params}, batch)
    return cross_entropy_sums(logits, next_token_targets(batch["labels"], batch["segment_ids"]))


def mean_loss(model, params, batch):
    total, count = loss_sums(model, params, batch)
    return total / jnp.maximum(count, 1.0)


def loss_and_grads(model, params, batch):
    """Token-mean loss and its gradients (no optimizer): the quantity sharding must not change."""
    return jax.value_and_grad(lambda p: mean_loss(model, p, batch))(params)
