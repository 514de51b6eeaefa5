"""Gradient accumulation over micro-batches, weighted by tokens: one accumulator, two drivers.

The loss of a step is the mean over all loss tokens of the whole (global) batch:
``loss = sum_k sum_i l_ki / sum_k n_k``. Its gradient is ``sum_k grad(sum_i l_ki) / sum_k n_k``, so each
micro-batch contributes the gradient of its loss *sum*; we divide once, at the end, by the total token
count. Averaging per-micro-batch means (``mean_k (sum_i l_ki / n_k)``, what a naive loop over
``loss.mean()`` does) over-weights micro-batches with few loss tokens; with packing and masked prompts the
token counts differ a lot, and that estimate is biased.

Under `jit` with a batch sharded over devices, the sums are global (GSPMD inserts the all-reduces), so the
division is by the global token count, as it should be.

The accumulator (`Accumulator`, a pytree) holds the gradient sums of the *trainable* leaves only, in
`accum_dtype`, and named scalar sums: "loss" (the summed loss), "weight" (what the loss is divided by: the
loss-token count; GRPO's sequence-mean modes count sequences) and the loss function's metric sums.
`zeros` makes one, `add` adds one micro-batch's value-and-gradient of its loss sum, `finish` divides once
by the total weight (zeros, not NaN, when there is none). A leaf whose trainable mask is False gets no
gradient computation at all (no dW matmul, no accumulator) and a zero gradient from `finish`.

Two drivers over that one accumulator, because the batches arrive differently:
  - SFT (`accumulate_gradients`): the data pipeline delivers a step's K micro-batches ahead as one
    ``[K, ...]`` batch, and `jax.lax.scan` runs `add` over them inside the one jitted train step. One
    program per step; the accumulator never leaves the device, and XLA sees the whole loop (on TPU it
    overlaps a micro-batch's parameter all-gathers with the previous one's compute).
  - GRPO (`rl/trainer.py`): micro-batches are built on the host from the rollout, their number differs per
    step (this host's rows of a shuffled mini-batch), and a Lingshu mini-batch (2048 rows) would not fit on
    the device as one ``[K, ...]`` array. So a host loop calls `add`, jitted as its own program with the
    accumulator donated, once per micro-batch (the host builds micro-batch k+1 while the device runs k),
    and the update program calls `finish`.
Both therefore share the token weighting, the frozen-leaf handling and the accumulator dtype.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp

LOSS, WEIGHT = "loss", "weight"  # the sums every accumulator has

# (params, micro_batch) -> (loss sum [], {"weight": [], other metric sums: []}); only the first is
# differentiated.
LossSumsFn = Callable[[Any, Any], tuple[jax.Array, dict]]


class Accumulator(NamedTuple):
    """What `add` adds into. `sums`: {name: [] accum_dtype}, "loss", "weight" and the loss function's
    metric sums; `grads`: gradient sums of the trainable leaves, in the parameters' leaf order."""

    sums: dict
    grads: list


def _mask(treedef, trainable: Optional[Any]) -> list[bool]:
    if trainable is None:
        return [True] * treedef.num_leaves
    return [bool(m) for m in treedef.flatten_up_to(trainable)]


def trainable_leaves(tree: Any, trainable: Optional[Any] = None) -> list:
    """The leaves of `tree` (params, or a tree shaped like them, e.g. their shardings) whose `trainable`
    mask is True (all of them when it is None), in leaf order: the layout of `Accumulator.grads`."""
    leaves, treedef = jax.tree.flatten(tree)
    return [x for x, m in zip(leaves, _mask(treedef, trainable)) if m]


def zeros(
    params: Any,
    names: Sequence[str] = (),
    trainable: Optional[Any] = None,
    accum_dtype: Any = jnp.float32,
) -> Accumulator:
    """An empty accumulator for `params` with sums "loss", "weight" and `names`.

    `trainable`: optional tree of Python bools shaped like params (`OptimizerInfo.trainable_mask`; static,
    close over it rather than passing it through `jit`); None: every leaf is trained."""
    sums = {k: jnp.zeros((), accum_dtype) for k in dict.fromkeys((LOSS, WEIGHT, *names))}
    grads = [jnp.zeros(jnp.shape(x), accum_dtype) for x in trainable_leaves(params, trainable)]
    return Accumulator(sums, grads)


def sharding_like(
    param_shardings: Any, scalar: Any, names: Sequence[str] = (), trainable: Optional[Any] = None
) -> Accumulator:
    """The shardings of `zeros(params, names, trainable)`: gradient sums sharded like their parameters,
    the sums with `scalar` (replicated)."""
    sums = {k: scalar for k in dict.fromkeys((LOSS, WEIGHT, *names))}
    return Accumulator(sums, trainable_leaves(param_shardings, trainable))


def add(
    loss_sums_fn: LossSumsFn,
    params: Any,
    acc: Accumulator,
    micro_batch: Any,
    trainable: Optional[Any] = None,
) -> Accumulator:
    """acc + one micro-batch: the gradient of its loss sum (trainable leaves only) and its sums.

    `loss_sums_fn(params, micro_batch) -> (loss sum [], sums)`: `sums` has "weight" and exactly the other
    names `acc` was made with (besides "loss", which is the loss sum itself)."""
    leaves, treedef = jax.tree.flatten(params)
    train_idx = [i for i, m in enumerate(_mask(treedef, trainable)) if m]

    def loss_of_trainable(train_leaves, mb):
        full = list(leaves)
        for i, x in zip(train_idx, train_leaves):
            full[i] = x
        return loss_sums_fn(jax.tree.unflatten(treedef, full), mb)

    grad_fn = jax.value_and_grad(loss_of_trainable, has_aux=True)
    (loss_sum, sums), grads = grad_fn([leaves[i] for i in train_idx], micro_batch)
    if set(sums) | {LOSS} != set(acc.sums) or LOSS in sums:
        raise ValueError(
            f"the loss function returned sums {sorted(sums)}; the accumulator has {sorted(acc.sums)} "
            f"('{LOSS}' is the loss sum itself, '{WEIGHT}' is required)"
        )
    grad_acc = [a + g.astype(a.dtype) for a, g in zip(acc.grads, grads)]
    dtype = acc.sums[LOSS].dtype
    new = {LOSS: acc.sums[LOSS] + loss_sum.astype(dtype)}
    new.update({k: acc.sums[k] + jnp.asarray(v, dtype) for k, v in sums.items()})
    return Accumulator({k: new[k] for k in acc.sums}, grad_acc)


def finish(acc: Accumulator, params: Any, trainable: Optional[Any] = None) -> tuple[jax.Array, Any, dict]:
    """-> (loss / weight [], gradients (params' tree, accum_dtype leaves; zeros for frozen leaves) / weight,
    the sums undivided). Divides by max(weight, 1): no weight gives zeros, not NaN."""
    denom = jnp.maximum(acc.sums[WEIGHT], 1)
    leaves, treedef = jax.tree.flatten(params)
    dtype = acc.sums[LOSS].dtype
    grads = [jnp.zeros(jnp.shape(x), dtype) for x in leaves]
    train_idx = [i for i, m in enumerate(_mask(treedef, trainable)) if m]
    for i, g in zip(train_idx, acc.grads):
        grads[i] = g / denom
    return acc.sums[LOSS] / denom, jax.tree.unflatten(treedef, grads), acc.sums


def accumulate_gradients(
    loss_sums_fn: LossSumsFn,
    params: Any,
    batch: Any,
    accum_dtype: Any = jnp.float32,
    trainable: Optional[Any] = None,
    names: Sequence[str] = (),
) -> tuple[jax.Array, Any, dict]:
    """The scan driver: `add` over the K micro-batches of `batch`, then `finish`.

    Args:
      loss_sums_fn: see `add`; its sums are "weight" plus `names`.
      params: the parameter tree.
      batch: a tree whose every leaf has a leading micro-batch axis ``[K, ...]``; micro-batch k is
        ``jax.tree.map(lambda x: x[k], batch)``.
      accum_dtype: dtype of the gradient and sum accumulators (float32).
      trainable: see `zeros`.

    Returns:
      `finish`'s (loss_mean [], grads (params' tree, `accum_dtype` leaves), sums {"loss", "weight", ...}):
      loss and grads divided by the total weight.
    """

    def body(acc, micro_batch):
        return add(loss_sums_fn, params, acc, micro_batch, trainable), None

    acc, _ = jax.lax.scan(body, zeros(params, names, trainable, accum_dtype), batch)
    return finish(acc, params, trainable)
