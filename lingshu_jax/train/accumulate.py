"""Gradient accumulation over micro-batches, weighted by tokens.

The loss of a step is the mean over all loss tokens of the whole (global) batch:
``loss = sum_k sum_i l_ki / sum_k n_k``. Its gradient is ``sum_k grad(sum_i l_ki) / sum_k n_k``, so each
micro-batch contributes the gradient of its loss *sum*; we divide once, at the end, by the total token
count. Averaging per-micro-batch means (``mean_k (sum_i l_ki / n_k)``, what a naive loop over
``loss.mean()`` does) over-weights micro-batches with few loss tokens; with packing and masked prompts the
token counts differ a lot, and that estimate is biased.

Under `jit` with a batch sharded over devices, the sums are global (GSPMD inserts the all-reduces), so the
division is by the global token count, as it should be.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

LossSumFn = Callable[[Any, Any], tuple[jax.Array, jax.Array]]


def accumulate_gradients(
    loss_sum_fn: LossSumFn,
    params: Any,
    batch: Any,
    accum_dtype: Any = jnp.float32,
    trainable: Optional[Any] = None,
) -> tuple[jax.Array, Any, jax.Array]:
    """Token-weighted mean loss and gradient over K micro-batches, with `jax.lax.scan`.

    Args:
      loss_sum_fn: ``(params, micro_batch) -> (sum of token losses [], number of loss tokens [])``.
      params: the parameter tree.
      batch: a tree whose every leaf has a leading micro-batch axis ``[K, ...]``; micro-batch k is
        ``jax.tree.map(lambda x: x[k], batch)``.
      accum_dtype: dtype of the gradient, loss and token accumulators (float32).
      trainable: optional tree of Python bools shaped like params (`OptimizerInfo.trainable_mask`; static,
        close over it rather than passing it through `jit`): gradients are
        taken only for True leaves (no dW matmuls, no accumulators for frozen ones); False leaves get zeros.

    Returns:
      (loss_mean [], grads (params' tree, `accum_dtype` leaves), num_tokens [] float): loss and grads are
      divided by the total token count (by 1 when there are no tokens, giving zeros).
    """
    leaves, treedef = jax.tree.flatten(params)
    mask = [True] * len(leaves) if trainable is None else [bool(m) for m in treedef.flatten_up_to(trainable)]
    train_idx = [i for i, m in enumerate(mask) if m]

    def loss_of_trainable(train_leaves, micro_batch):
        full = list(leaves)
        for i, x in zip(train_idx, train_leaves):
            full[i] = x
        return loss_sum_fn(jax.tree.unflatten(treedef, full), micro_batch)

    grad_fn = jax.value_and_grad(loss_of_trainable, has_aux=True)
    train_leaves = [leaves[i] for i in train_idx]

    def body(carry, micro_batch):
        loss_acc, tok_acc, grad_acc = carry
        (loss_sum, n_tokens), grads = grad_fn(train_leaves, micro_batch)
        grad_acc = [a + g.astype(accum_dtype) for a, g in zip(grad_acc, grads)]
        return (
            loss_acc + loss_sum.astype(accum_dtype),
            tok_acc + jnp.asarray(n_tokens, accum_dtype),
            grad_acc,
        ), None

    init = (
        jnp.zeros((), accum_dtype),
        jnp.zeros((), accum_dtype),
        [jnp.zeros(jnp.shape(x), accum_dtype) for x in train_leaves],
    )
    (loss_sum, num_tokens, grad_sum), _ = jax.lax.scan(body, init, batch)
    denom = jnp.maximum(num_tokens, 1)
    grads = [jnp.zeros(jnp.shape(x), accum_dtype) for x in leaves]
    for i, g in zip(train_idx, grad_sum):
        grads[i] = g / denom
    return loss_sum / denom, jax.tree.unflatten(treedef, grads), num_tokens
