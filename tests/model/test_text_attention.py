"""Training text attention in causal query blocks equals the dense masked attention (packed segments,
padding, GQA), values and gradients, wherever a query sees a key."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lingshu_jax.model.attention import dot_product_attention, segment_mask
from lingshu_jax.model.text import causal_block_attention

B, S, H, KVH, D = 2, 24, 4, 2, 8


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    q, k, v = (jnp.asarray(rng.normal(size=(B, S, h, D)), jnp.float32) for h in (H, KVH, KVH))
    seg = np.ones((B, S), np.int32)
    seg[0, 9:], seg[0, 17:] = 2, 3  # three packed segments
    seg[1, 20:] = 0  # padding at the end
    mask = segment_mask(jnp.asarray(seg), jnp.asarray(seg), causal=True)  # [B, 1, S, S]
    return q, k, v, mask, seg


@pytest.mark.parametrize("blocks", [2, 3, 4, 5])
def test_blocks_equal_dense_attention(blocks):
    q, k, v, mask, seg = _inputs()
    dense = dot_product_attention(q, k, v, mask)
    out = causal_block_attention(q, k, v, mask, blocks=blocks)  # 5 does not divide 24: dense fallback
    real = seg > 0
    np.testing.assert_allclose(np.asarray(out)[real], np.asarray(dense)[real], rtol=1e-6, atol=1e-6)
    assert np.isfinite(np.asarray(out)).all()


def test_block_gradients_equal_dense():
    q, k, v, mask, seg = _inputs(seed=1)
    w = jnp.asarray(seg > 0, jnp.float32)[..., None, None]  # loss over real queries only

    def loss(fn):
        return lambda q, k, v: jnp.sum(w * jnp.sin(fn(q, k, v)))

    grads = jax.grad(loss(lambda *a: causal_block_attention(*a, mask, blocks=4)), argnums=(0, 1, 2))(q, k, v)
    want = jax.grad(loss(lambda *a: dot_product_attention(*a, mask)), argnums=(0, 1, 2))(q, k, v)
    for g, r in zip(grads, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-5, atol=1e-6)
