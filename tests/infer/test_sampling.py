"""Sampling filters on hand-made logits: greedy, temperature, top-k (ties kept), top-p (crossing token kept)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lingshu_jax.infer.sampling import (
    SamplingConfig,
    filter_logits,
    sample,
    top_k_filter,
    top_p_filter,
)

LOGITS = jnp.array([[1.0, 3.0, 2.0, 0.0, -1.0], [0.5, 0.5, 4.0, 0.5, 0.0]])


def _kept(x):
    return np.isfinite(np.asarray(x))


def test_greedy_is_argmax_and_ignores_filters_and_key():
    cfg = SamplingConfig(temperature=0.0, top_k=1, top_p=0.1)
    for seed in range(3):
        np.testing.assert_array_equal(sample(LOGITS, jax.random.key(seed), cfg), [1, 2])


def test_top_k_keeps_k_largest_and_ties_at_the_kth_value():
    np.testing.assert_array_equal(
        _kept(top_k_filter(LOGITS, 2)), [[0, 1, 1, 0, 0], [1, 1, 1, 1, 0]]
    )  # row 2: three tied at the 2nd value
    np.testing.assert_array_equal(_kept(top_k_filter(LOGITS, 0)), np.ones((2, 5), bool))
    np.testing.assert_array_equal(_kept(top_k_filter(LOGITS, 9)), np.ones((2, 5), bool))


def test_top_p_keeps_the_token_that_crosses_p():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    np.testing.assert_array_equal(_kept(top_p_filter(logits, 0.5)), [[1, 0, 0, 0]])  # 0.5 reaches p
    np.testing.assert_array_equal(_kept(top_p_filter(logits, 0.6)), [[1, 1, 0, 0]])  # 0.5 < 0.6 -> 0.8
    np.testing.assert_array_equal(_kept(top_p_filter(logits, 0.85)), [[1, 1, 1, 0]])
    np.testing.assert_array_equal(_kept(top_p_filter(logits, 0.01)), [[1, 0, 0, 0]])  # never empty
    np.testing.assert_array_equal(_kept(top_p_filter(logits, 1.0)), [[1, 1, 1, 1]])


def test_top_p_matches_transformers_warper():
    import torch
    from transformers.generation.logits_process import TopPLogitsWarper

    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 50)).astype(np.float32) * 2
    for p in (0.3, 0.7, 0.95):
        ref = TopPLogitsWarper(p)(None, torch.from_numpy(logits)).numpy()
        np.testing.assert_array_equal(_kept(top_p_filter(jnp.asarray(logits), p)), np.isfinite(ref))


def test_temperature_scales_before_filters():
    cfg = SamplingConfig(temperature=2.0, top_k=3)
    out = np.asarray(filter_logits(LOGITS, cfg))
    np.testing.assert_allclose(out[0, [1, 2, 0]], [1.5, 1.0, 0.5])
    assert not np.isfinite(out[0, [3, 4]]).any()


def test_sampling_draws_only_kept_tokens_with_the_right_frequencies():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]] * 4000))
    draws = np.asarray(sample(logits, jax.random.key(0), SamplingConfig(temperature=1.0, top_p=0.85)))
    assert set(np.unique(draws)) <= {0, 1, 2}
    freq = np.bincount(draws, minlength=4) / len(draws)
    np.testing.assert_allclose(freq[:3], np.array([0.5, 0.3, 0.15]) / 0.95, atol=0.03)


def test_same_key_same_draws_other_key_other_draws():
    logits = jnp.zeros((64, 100))
    cfg = SamplingConfig(temperature=1.0)
    a, b = sample(logits, jax.random.key(1), cfg), sample(logits, jax.random.key(1), cfg)
    np.testing.assert_array_equal(a, b)
    assert (np.asarray(a) != np.asarray(sample(logits, jax.random.key(2), cfg))).any()


def test_per_row_keys_make_each_rows_draw_independent_of_the_batch_around_it():
    """With one key per row, a row draws the same token alone, in another batch or at another position."""
    logits = jax.random.normal(jax.random.key(0), (6, 50))
    keys = jax.random.split(jax.random.key(3), 6)
    cfg = SamplingConfig(temperature=1.0, top_k=20)
    whole = np.asarray(sample(logits, keys, cfg))
    alone = [int(sample(logits[i : i + 1], keys[i : i + 1], cfg)[0]) for i in range(6)]
    order = np.array([4, 1, 5, 0, 3, 2])
    shuffled = np.asarray(sample(logits[order], keys[order], cfg))
    np.testing.assert_array_equal(whole, alone)
    np.testing.assert_array_equal(whole[order], shuffled)
    other = np.asarray(sample(logits, jax.random.split(jax.random.key(4), 6), cfg))
    assert (other != whole).any()


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"temperature": -1}, "temperature"),
        ({"top_k": -2}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
    ],
)
def test_invalid_config_names_the_field(kw, match):
    with pytest.raises(ValueError, match=match):
        SamplingConfig(**kw)
