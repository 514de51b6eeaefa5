"""Cross entropy: `token_nll` (logsumexp - target logit, hand-written gradient) equals the plain
log-softmax + gather formula in value and gradient; masking, per-segment means, dtypes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lingshu_jax.train.loss import (
    IGNORE,
    cross_entropy_sums,
    masked_token_nll,
    next_token_targets,
    per_segment_losses,
    token_nll,
)

B, S, V = 3, 17, 301


def _plain_sums(logits, targets):
    """The textbook formula: full float32 log-softmax, gather, mask."""
    valid = targets != IGNORE
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, jnp.where(valid, targets, 0)[..., None], axis=-1)[..., 0]
    return jnp.sum(jnp.where(valid, nll, 0.0)), jnp.sum(valid).astype(jnp.float32)


def _data(dtype=jnp.float32, seed=0):
    rng = np.random.default_rng(seed)
    logits = jnp.asarray(6.0 * rng.normal(size=(B, S, V)), dtype)  # wide logits: exercises the max shift
    targets = rng.integers(0, V, (B, S))
    targets[:, ::4] = IGNORE
    targets[0, 1] = V - 1  # the last vocabulary entry
    return logits, jnp.asarray(targets, jnp.int32)


def test_sums_and_gradient_equal_plain_formula_fp32():
    logits, targets = _data()
    (total, count), (ref_total, ref_count) = (
        cross_entropy_sums(logits, targets),
        _plain_sums(logits, targets),
    )
    assert float(count) == float(ref_count) == float((targets != IGNORE).sum())
    np.testing.assert_allclose(float(total), float(ref_total), rtol=1e-6)

    mean = lambda f: lambda x: f(x, targets)[0] / f(x, targets)[1]
    g, ref = (
        jax.grad(mean(cross_entropy_sums))(logits),
        jax.grad(mean(_plain_sums))(logits),
    )
    assert g.dtype == jnp.float32
    np.testing.assert_allclose(
        np.asarray(g), np.asarray(ref), rtol=1e-6, atol=1e-6 * float(jnp.abs(ref).max())
    )
    ignored = np.asarray(targets) == IGNORE
    assert not np.asarray(g)[ignored].any()  # ignored positions get exactly zero gradient


def test_bf16_logits_give_bf16_gradient_and_float32_loss():
    logits, targets = _data(jnp.bfloat16, seed=1)
    nll = token_nll(logits[0], jnp.maximum(targets[0], 0))
    assert nll.dtype == jnp.float32
    total, _ = cross_entropy_sums(logits, targets)
    np.testing.assert_allclose(float(total), float(_plain_sums(logits, targets)[0]), rtol=1e-6)
    g = jax.grad(lambda x: cross_entropy_sums(x, targets)[0])(logits)
    ref = jax.grad(lambda x: _plain_sums(x, targets)[0])(logits)
    assert g.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(ref, np.float32), atol=1e-2)


def test_token_nll_under_jit_and_vmap_matches_per_row():
    logits, targets = _data(seed=2)
    t = jnp.maximum(targets, 0)
    flat = jax.jit(token_nll)(logits.reshape(-1, V), t.reshape(-1)).reshape(B, S)
    rows = jax.vmap(token_nll)(logits, t)
    np.testing.assert_allclose(np.asarray(flat), np.asarray(rows), rtol=1e-6)
    ref = -jnp.take_along_axis(jax.nn.log_softmax(logits, -1), t[..., None], -1)[..., 0]
    np.testing.assert_allclose(np.asarray(flat), np.asarray(ref), rtol=1e-6, atol=1e-6)


def test_masked_token_nll_zero_where_ignored():
    logits, targets = _data(seed=3)
    nll, valid = masked_token_nll(logits, targets)
    assert nll.shape == valid.shape == (B, S)
    assert not np.asarray(nll)[~np.asarray(valid)].any()
    assert (np.asarray(nll)[np.asarray(valid)] > 0).all()


@pytest.mark.parametrize("num_segments", [1, 3])
def test_per_segment_losses_are_segment_means(num_segments):
    logits, labels = _data(seed=4)
    seg = np.ones((B, S), np.int32)
    if num_segments == 3:
        seg[:, 6:11], seg[:, 11:] = 2, 3
    seg[1, -2:] = 0  # padding
    targets = next_token_targets(labels, jnp.asarray(seg))
    got = np.asarray(per_segment_losses(logits, targets, jnp.asarray(seg), num_segments))
    nll, valid = masked_token_nll(logits, targets)
    for b in range(B):
        for k in range(1, num_segments + 1):
            m = (seg[b] == k) & np.asarray(valid[b])
            want = float(np.asarray(nll[b])[m].mean()) if m.any() else 0.0
            np.testing.assert_allclose(got[b, k - 1], want, rtol=1e-6)
