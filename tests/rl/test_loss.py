"""GRPO loss pieces against hand-computed values on tiny arrays."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lingshu_jax.rl.loss import aggregate, group_advantages, grpo_loss, k3_kl, token_entropy, token_log_probs


# ---------------------------------------------------------------- advantages
def test_group_advantages_2x4_uses_sample_std_and_zeroes_equal_groups():
    # group 1: mean 0.25, deviations (.75, -.25, -.25, -.25), sample var = .75 / 3 = .25 -> std .5
    # group 2: all equal -> std 0 -> advantage exactly 0 (eps keeps it finite)
    adv = group_advantages(jnp.array([1.0, 0, 0, 0, 2, 2, 2, 2]), group_size=4)
    np.testing.assert_allclose(adv[:4], np.array([0.75, -0.25, -0.25, -0.25]) / (0.5 + 1e-6), rtol=1e-6)
    assert np.all(np.asarray(adv[4:]) == 0.0)
    assert np.all(np.isfinite(adv))


def test_group_advantages_without_std_scaling_is_centred_reward():
    adv = group_advantages(jnp.array([1.0, 0, 0, 0, 2, 2, 2, 2]), group_size=4, scale_by_std=False)
    np.testing.assert_allclose(adv, [0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0], atol=1e-7)


def test_group_of_one_keeps_raw_reward_and_bad_shape_raises():
    np.testing.assert_allclose(group_advantages(jnp.array([0.3, 1.0]), group_size=1), [0.3, 1.0])
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(jnp.zeros(8), group_size=3)


# ---------------------------------------------------------------- log-probs, entropy, k3
def test_token_log_probs_matches_log_softmax_gather_in_fp32():
    logits = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 7)) * 30.0
    targets = jnp.array([[0, 6, 3], [1, 1, 5]])
    expected = jnp.take_along_axis(jax.nn.log_softmax(logits, -1), targets[..., None], -1)[..., 0]
    got = token_log_probs(logits.astype(jnp.bfloat16), targets)
    assert got.dtype == jnp.float32 and got.shape == (2, 3)
    np.testing.assert_allclose(token_log_probs(logits, targets), expected, atol=1e-5)
    big = token_log_probs(jnp.array([[[1e4, 0.0, -1e4]]]), jnp.array([[0]]))
    np.testing.assert_allclose(big, [[0.0]], atol=1e-6)


def test_token_entropy_uniform_peaked_and_reference():
    assert np.allclose(token_entropy(jnp.zeros((1, 1, 8))), math.log(8), atol=1e-6)
    assert np.allclose(token_entropy(jnp.array([[[1e4, 0.0, 0.0]]])), 0.0, atol=1e-6)
    logits = jax.random.normal(jax.random.PRNGKey(1), (2, 3, 5))
    p = jax.nn.softmax(logits, -1)
    np.testing.assert_allclose(token_entropy(logits), -jnp.sum(p * jnp.log(p), -1), atol=1e-6)


def test_k3_kl_hand_values():
    # d = ref - logp; k3 = e^d - d - 1
    logp = jnp.log(jnp.array([[0.5, 0.25, 0.3]]))
    ref = jnp.log(jnp.array([[0.25, 0.5, 0.3]]))
    expected = [0.5 + math.log(2) - 1, 2 - math.log(2) - 1, 0.0]  # 0.193147, 0.306853, 0
    np.testing.assert_allclose(k3_kl(logp, ref), [expected], atol=1e-6)


def test_kl_term_enters_loss_with_its_coefficient():
    logp = jnp.log(jnp.array([[0.5, 0.25]]))
    ref = jnp.log(jnp.array([[0.25, 0.5]]))
    mask = jnp.ones((1, 2))
    loss, m = grpo_loss(logp, logp, ref, jnp.zeros(1), mask, kl_coef=1e-3)  # ratio 1, A = 0 -> pg = 0
    k3_mean = (0.5 + math.log(2) - 1 + 2 - math.log(2) - 1) / 2
    np.testing.assert_allclose(m["kl"], k3_mean, rtol=1e-5)
    np.testing.assert_allclose(loss, 1e-3 * k3_mean, rtol=1e-5)
    np.testing.assert_allclose(m["pg_loss"], 0.0, atol=1e-7)


# ---------------------------------------------------------------- clipping
@pytest.mark.parametrize(
    "adv, ratio, kwargs, loss, clipped, grad",
    [
        (+1.0, 1.5, {}, -1.2, 1.0, 0.0),  # A > 0, ratio above 1+eps: clipped, no gradient
        (+1.0, 0.5, {}, -0.5, 0.0, -0.5),  # A > 0, ratio below 1-eps: unclipped (pessimistic min)
        (-1.0, 1.5, {}, 1.5, 0.0, 1.5),  # A < 0, ratio above 1+eps: unclipped
        (-1.0, 0.5, {}, 0.8, 1.0, 0.0),  # A < 0, ratio below 1-eps: clipped, no gradient
        (+1.0, 1.1, {}, -1.1, 0.0, -1.1),  # inside the trust region
        (+1.0, 1.25, {"clip_eps_high": 0.28}, -1.25, 0.0, -1.25),  # clip-higher widens the upper side
        (+1.0, 1.25, {}, -1.2, 1.0, 0.0),  # ... which the symmetric default clips
        (-1.0, 4.0, {"clip_ratio_dual": 3.0}, 3.0, 0.0, 0.0),  # dual clip caps -A * ratio at -A * c
    ],
)
def test_clipped_surrogate_single_token(adv, ratio, kwargs, loss, clipped, grad):
    old = jnp.array([[-1.0]])
    logp = old + math.log(ratio)

    def f(lp):
        return grpo_loss(lp, old, old, jnp.array([adv]), jnp.ones((1, 1)), kl_coef=0.0, **kwargs)

    (value, metrics), g = jax.value_and_grad(f, has_aux=True)(logp)
    np.testing.assert_allclose(value, loss, rtol=1e-5)
    np.testing.assert_allclose(metrics["clip_fraction"], clipped)
    np.testing.assert_allclose(metrics["ratio_mean"], ratio, rtol=1e-5)
    np.testing.assert_allclose(g, [[grad]], rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- masking and gradients
def _batch(seed=0):
    k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(seed), 4)
    old = -jax.random.uniform(k1, (2, 4), minval=0.5, maxval=3.0)
    logp = old + jax.random.uniform(k2, (2, 4), minval=-0.1, maxval=0.1)  # ratios inside [0.9, 1.1]
    ref = old + jax.random.uniform(k3, (2, 4), minval=-0.5, maxval=0.5)
    adv = jax.random.normal(k4, (2,))
    mask = jnp.array([[0, 1, 1, 1], [0, 0, 1, 0]], jnp.float32)  # prompt token first, padding last
    return logp, old, ref, adv, mask


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean"])
def test_masked_tokens_change_neither_loss_nor_gradients(agg):
    logp, old, ref, adv, mask = _batch()
    f = lambda lp, o, r: grpo_loss(lp, o, r, adv, mask, kl_coef=0.1, loss_agg=agg)[0]  # noqa: E731
    value, grad = jax.value_and_grad(f)(logp, old, ref)
    junk = lambda x, v: jnp.where(mask > 0, x, v)  # noqa: E731
    value2, grad2 = jax.value_and_grad(f)(junk(logp, 1e4), junk(old, -1e4), junk(ref, jnp.nan))
    np.testing.assert_allclose(value2, value, rtol=1e-6)
    np.testing.assert_allclose(grad2, grad, rtol=1e-6)
    assert np.all(np.asarray(grad)[np.asarray(mask) == 0] == 0.0)
    assert np.all(np.asarray(grad)[np.asarray(mask) == 1] != 0.0)


def test_gradient_flows_only_through_logp_and_matches_finite_differences():
    logp, old, ref, adv, mask = _batch(1)
    f = lambda lp, o, r, a: grpo_loss(lp, o, r, a, mask, kl_coef=0.5)[0]  # noqa: E731
    g_lp, g_old, g_ref, g_adv = jax.grad(f, argnums=(0, 1, 2, 3))(logp, old, ref, adv)
    for g in (g_old, g_ref, g_adv):
        assert np.all(np.asarray(g) == 0.0)
    # analytic (token-mean, every ratio inside the clip range): (-A r + c (1 - e^(ref - logp))) / N
    n = float(mask.sum())
    analytic = mask * (-adv[:, None] * jnp.exp(logp - old) + 0.5 * (1 - jnp.exp(ref - logp))) / n
    np.testing.assert_allclose(g_lp, analytic, rtol=1e-5, atol=1e-7)
    h = 1e-3
    for b, t in [(0, 1), (0, 3), (1, 2)]:
        e = jnp.zeros_like(logp).at[b, t].set(h)
        fd = (f(logp + e, old, ref, adv) - f(logp - e, old, ref, adv)) / (2 * h)
        np.testing.assert_allclose(fd, g_lp[b, t], rtol=2e-3, atol=1e-5)


# ---------------------------------------------------------------- aggregation
def test_aggregate_modes_by_hand():
    x = jnp.array([[1.0, 2.0, 3.0, 9.0], [10.0, 9.0, 9.0, 9.0], [5.0, 5.0, 5.0, 5.0]])
    m = jnp.array([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])  # last row is all padding
    np.testing.assert_allclose(aggregate(x, m, "token-mean"), 16 / 4)
    np.testing.assert_allclose(aggregate(x, m, "seq-mean-token-mean"), (2 + 10) / 2)
    np.testing.assert_allclose(aggregate(x, m, "token-mean", normalizer=8.0), 16 / 8)
    with pytest.raises(ValueError, match="unknown loss_agg"):
        aggregate(x, m, "seq-sum")


def test_grpo_loss_aggregation_variants_weight_tokens_vs_sequences():
    # ratio 1 everywhere, no KL: per-token loss = -A. Sequence 0 has 3 tokens (A=1), sequence 1 has 1 (A=3).
    logp = jnp.full((2, 4), -1.0)
    mask = jnp.array([[1, 1, 1, 0], [1, 0, 0, 0]])
    adv = jnp.array([1.0, 3.0])
    tok, _ = grpo_loss(logp, logp, logp, adv, mask, loss_agg="token-mean")
    seq, _ = grpo_loss(logp, logp, logp, adv, mask, loss_agg="seq-mean-token-mean")
    np.testing.assert_allclose(tok, -(3 * 1 + 3) / 4)
    np.testing.assert_allclose(seq, -(1 + 3) / 2)


def test_grpo_loss_jits():
    logp, old, ref, adv, mask = _batch(2)
    loss, metrics = jax.jit(grpo_loss, static_argnames=("loss_agg",))(logp, old, ref, adv, mask)
    eager, _ = grpo_loss(logp, old, ref, adv, mask)
    np.testing.assert_allclose(loss, eager, rtol=1e-6)
    assert set(metrics) >= {"pg_loss", "kl", "clip_fraction", "ratio_mean"}
