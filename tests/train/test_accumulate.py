"""Token-weighted gradient accumulation: K micro-batches of 1 row equal one batch of K rows, with either
driver over the one accumulator (SFT's scan, GRPO's host loop of jitted `add`)."""

import operator

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lingshu_jax.train import accumulate
from lingshu_jax.train.accumulate import accumulate_gradients

V, E, K, S = 11, 6, 4, 7


def _params():
    rng = np.random.default_rng(1)
    f = lambda *shape, scale=1.0: jnp.asarray(rng.normal(size=shape) * scale, jnp.float32)
    return {"embed": f(V, E), "mlp": {"kernel": f(E, E, scale=0.5)}, "head": {"kernel": f(E, V, scale=0.5)}}


def _loss_sum(params, batch):
    """Tiny embedding LM: next-token cross entropy summed over the tokens with weight 1."""
    h = params["embed"][batch["inputs"]]
    h = h + jnp.tanh(h @ params["mlp"]["kernel"])
    logits = h @ params["head"]["kernel"]
    logp = jax.nn.log_softmax(logits)
    nll = -jnp.take_along_axis(logp, batch["targets"][..., None], axis=-1)[..., 0]
    w = batch["weights"]
    return jnp.sum(nll * w), {"weight": jnp.sum(w)}


def _batch():
    rng = np.random.default_rng(0)
    inputs = rng.integers(0, V, (K, S))
    counts = np.array([1, 7, 2, 5])  # unequal loss tokens per row: the per-micro-batch mean is biased
    weights = (np.arange(S)[None] < counts[:, None]).astype(np.float32)
    return {
        "inputs": jnp.asarray(inputs),
        "targets": jnp.asarray(np.roll(inputs, -1, axis=1)),
        "weights": jnp.asarray(weights),
    }


@jax.jit
def _reference(params, batch):
    """Loss and gradient of the token mean over one undivided batch."""

    def mean_loss(p):
        s, sums = _loss_sum(p, batch)
        return s / sums["weight"]

    return jax.value_and_grad(mean_loss)(params)


@jax.jit
def _buggy_mean_of_means(params, micro):
    def mean_loss(p, mb):
        s, sums = _loss_sum(p, mb)
        return s / sums["weight"]

    vals, grads = jax.vmap(jax.value_and_grad(mean_loss), in_axes=(None, 0))(params, micro)
    return vals.mean(), jax.tree.map(lambda g: g.mean(0), grads)


def test_four_micro_batches_of_one_equal_one_batch_of_four():
    params, batch = _params(), _batch()
    micro = jax.tree.map(lambda x: x[:, None], batch)  # [K=4, 1, S]
    loss, grads, sums = jax.jit(accumulate_gradients, static_argnums=0)(_loss_sum, params, micro)
    want_loss, want_grads = _reference(params, batch)
    assert float(sums["weight"]) == 15.0
    np.testing.assert_allclose(loss, want_loss, rtol=1e-6, atol=1e-6)
    for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads)):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)

    # The per-micro-batch mean (mean of K means) is a different, biased estimate.
    bad_loss, bad_grads = _buggy_mean_of_means(params, micro)
    assert abs(float(bad_loss) - float(want_loss)) > 1e-3
    diff = max(
        float(jnp.max(jnp.abs(b - w)))
        for b, w in zip(jax.tree.leaves(bad_grads), jax.tree.leaves(want_grads))
    )
    assert diff > 1e-3


def test_two_micro_batches_of_two_and_zero_token_micro_batch():
    params, batch = _params(), _batch()
    batch = dict(batch, weights=batch["weights"].at[2].set(0.0))  # one row without loss tokens
    micro = jax.tree.map(lambda x: x.reshape((2, 2) + x.shape[1:]), batch)
    acc = jax.jit(accumulate_gradients, static_argnums=0)
    loss, grads, sums = acc(_loss_sum, params, micro)
    want_loss, want_grads = _reference(params, batch)
    assert float(sums["weight"]) == 13.0
    np.testing.assert_allclose(loss, want_loss, rtol=1e-6, atol=1e-6)
    for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads)):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)
    empty = jax.tree.map(lambda x: jnp.zeros_like(x[:1]), micro)  # no tokens at all: zeros, not NaN
    loss0, grads0, sums0 = acc(_loss_sum, params, empty)
    assert float(sums0["weight"]) == 0.0 and float(loss0) == 0.0
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads0))


def test_trainable_mask_skips_frozen_gradients():
    params, batch = _params(), _batch()
    micro = jax.tree.map(lambda x: x[:, None], batch)
    mask = {"embed": False, "mlp": {"kernel": True}, "head": {"kernel": True}}
    acc = jax.jit(lambda p, b: accumulate_gradients(_loss_sum, p, b, trainable=mask))  # mask is static
    loss, grads, _ = acc(params, micro)
    want_loss, want_grads = _reference(params, batch)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-6, atol=1e-6)
    assert float(jnp.abs(grads["embed"]).max()) == 0.0
    for k in ("mlp", "head"):
        np.testing.assert_allclose(grads[k]["kernel"], want_grads[k]["kernel"], rtol=1e-6, atol=1e-6)
    # Nothing flows into the frozen table: no scatter-add into it, and no dX of the matmul reading it.
    ops = lambda tr: str(
        jax.make_jaxpr(lambda p: accumulate_gradients(_loss_sum, p, micro, trainable=tr))(params)
    )
    full, frozen = ops(None), ops(mask)
    assert (full.count("scatter-add"), full.count("dot_general")) == (2, 6)  # 2 forward + 4 backward dots
    assert (frozen.count("scatter-add"), frozen.count("dot_general")) == (1, 5)


def test_host_loop_of_add_then_finish_equals_the_scan_driver_with_a_frozen_leaf():
    """GRPO's driver (jitted `add` per micro-batch, accumulator donated, `finish` in another program) and
    SFT's (`lax.scan` over [K, ...]) compute the same loss, gradients and metric sums."""
    params, batch = _params(), _batch()
    micro = jax.tree.map(lambda x: x[:, None], batch)
    mask = {"embed": True, "mlp": {"kernel": False}, "head": {"kernel": True}}

    def with_hits(p, mb):  # a metric sum besides the weight
        total, sums = _loss_sum(p, mb)
        return total, {**sums, "rows": jnp.float32(mb["inputs"].shape[0])}

    scan = jax.jit(lambda p, b: accumulate_gradients(with_hits, p, b, trainable=mask, names=("rows",)))
    want_loss, want_grads, want_sums = scan(params, micro)
    zeros = jax.jit(lambda p: accumulate.zeros(p, ("rows",), mask))
    add = jax.jit(lambda p, a, mb: accumulate.add(with_hits, p, a, mb, mask), donate_argnums=1)
    acc = zeros(params)
    assert len(acc.grads) == 2  # no accumulator for the frozen leaf
    for k in range(K):
        acc = add(params, acc, jax.tree.map(operator.itemgetter(k), micro))
    loss, grads, sums = jax.jit(lambda a, p: accumulate.finish(a, p, mask))(acc, params)
    assert float(sums["rows"]) == float(want_sums["rows"]) == K
    assert float(sums["weight"]) == float(want_sums["weight"]) == 15.0
    np.testing.assert_allclose(loss, want_loss, rtol=1e-6, atol=1e-7)
    for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads)):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)
    assert float(jnp.abs(grads["mlp"]["kernel"]).max()) == 0.0
    assert float(jnp.abs(grads["head"]["kernel"]).max()) > 0.0


def test_a_loss_function_whose_sums_differ_from_the_accumulators_is_named():
    params, batch = _params(), _batch()
    one = jax.tree.map(lambda x: x[0], batch)
    acc = accumulate.zeros(params, ("rows",))
    with pytest.raises(ValueError, match=r"returned sums \['weight'\]; the accumulator has .*'rows'"):
        accumulate.add(_loss_sum, params, acc, one)
