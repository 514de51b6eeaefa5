"""attention_impl="splash" (Pallas splash attention, interpret mode on CPU) equals the xla path: the decoder's
causal packed GQA attention and the vision stream's per-frame full attention, values and gradients (fp32,
1e-5), on one device and inside shard_map on a mesh (rows over fsdp, heads over tensor, stream chunks)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lingshu_jax import sharding
from lingshu_jax.model.attention import banded_block_attention, dot_product_attention, segment_mask
from lingshu_jax.model.splash import splash_attention, splash_stream_attention

B, S, H, KVH, D = 4, 200, 4, 2, 16  # S not a multiple of the kernel's 128-row block: padded inside


def _text_inputs(seed=0):
    rng = np.random.default_rng(seed)
    q, k, v = (jnp.asarray(rng.normal(size=(B, S, h, D)), jnp.float32) for h in (H, KVH, KVH))
    seg = np.ones((B, S), np.int32)
    seg[0, 70:], seg[0, 150:] = 2, 3  # three packed samples
    seg[1, 180:] = 0  # padding at the end
    seg[2, 120:] = 2
    return q, k, v, jnp.asarray(seg)


def _xla_text(q, k, v, seg):
    return dot_product_attention(q, k, v, segment_mask(seg, seg, causal=True))


def _splash_text(q, k, v, seg):
    return splash_attention(q, k, v, seg, seg, causal=True)


def _check(fn, ref, args, real):
    """Values at real positions and gradients of a loss over them agree to 1e-5."""
    w = jnp.asarray(real, jnp.float32)[..., None, None]
    np.testing.assert_allclose(
        np.asarray(jax.jit(fn)(*args))[real], np.asarray(ref(*args))[real], rtol=1e-5, atol=1e-5
    )
    loss = lambda f: lambda *a: jnp.sum(w * jnp.sin(f(*a)))  # noqa: E731
    got = jax.jit(jax.grad(loss(fn), argnums=(0, 1, 2)))(*args)
    want = jax.grad(loss(ref), argnums=(0, 1, 2))(*args)
    for g, r in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-5, atol=1e-5)


def test_text_splash_equals_xla_values_and_gradients():
    q, k, v, seg = _text_inputs()
    _check(_splash_text, _xla_text, (q, k, v, seg), np.asarray(seg) > 0)


def _stream(chunks: int, chunk_rows: int, seed=1):
    """q/k/v [N, H, D] and frame segments: frames of 64-row windows, none crossing a chunk boundary."""
    rng = np.random.default_rng(seed)
    n = chunks * chunk_rows
    q, k, v = (jnp.asarray(rng.normal(size=(n, H, D)), jnp.float32) for _ in range(3))
    seg, next_id = np.zeros(n, np.int32), 0
    for c in range(chunks):
        start = c * chunk_rows
        for size in rng.permutation([64, 128, 192])[: 1 + c % 3]:
            seg[start : start + size] = next_id
            start, next_id = start + size, next_id + 1
        seg[start : (c + 1) * chunk_rows] = next_id + np.arange((c + 1) * chunk_rows - start)  # padding
        next_id = int(seg.max()) + 1
    return q, k, v, jnp.asarray(seg)


def _dense_stream(q, k, v, seg):
    return banded_block_attention(q, k, v, seg, block=64, reach=10**6)  # one dense masked attention


def test_vision_stream_splash_equals_dense_frame_attention():
    q, k, v, seg = _stream(chunks=1, chunk_rows=448)
    _check(splash_stream_attention, _dense_stream, (q, k, v, seg), np.ones(len(seg), bool))


@pytest.fixture
def mesh_fsdp4_tensor2():
    mesh = sharding.make_mesh({"fsdp": 4, "tensor": 2})
    with sharding.mesh_context(mesh, sharding.DEFAULT_RULES):
        yield mesh


def test_on_a_mesh_rows_over_fsdp_heads_over_tensor(mesh_fsdp4_tensor2):
    q, k, v, seg = _text_inputs(seed=2)
    _check(_splash_text, _xla_text, (q, k, v, seg), np.asarray(seg) > 0)


def test_on_a_mesh_each_device_attends_its_own_stream_chunk(mesh_fsdp4_tensor2):
    """The stream over fsdp: 4 chunks of whole frames (data.vision_chunks=4) give the global answer."""
    q, k, v, seg = _stream(chunks=4, chunk_rows=256)
    _check(splash_stream_attention, _dense_stream, (q, k, v, seg), np.ones(len(seg), bool))


def test_splash_is_refused_on_gpu_and_with_a_sharded_sequence():
    from lingshu_jax.model import splash

    class GPU:
        empty = False
        abstract_device = type("D", (), {"platform": "gpu"})()

    with pytest.raises(ValueError, match="cudnn"):
        splash._interpret(GPU())
    mesh = sharding.make_mesh({"fsdp": 2, "sequence": 4})
    q, k, v, seg = _text_inputs()
    with sharding.mesh_context(mesh, sharding.DEFAULT_RULES), pytest.raises(ValueError, match="sequence"):
        _splash_text(q, k, v, seg)


def test_per_device_vision_scatter_gathers_locally_and_refuses_a_foreign_chunk(mesh_fsdp4_tensor2):
    """Rows of device d take merged tokens from chunk d only: equal to the global gather; an index into
    another device's chunk (a stream not laid out per device) gives NaN."""
    from lingshu_jax.model.vlm import _scatter_vision, per_device_vision_scatter

    rng = np.random.default_rng(3)
    vis = jnp.asarray(rng.normal(size=(32, 6)), jnp.float32)  # 4 chunks of 8 merged tokens
    x = jnp.asarray(rng.normal(size=(8, 5, 6)), jnp.float32)  # 8 rows, 2 per device
    idx = np.full((8, 5), -1, np.int32)
    for row in range(8):
        idx[row, 1:4] = (row // 2) * 8 + rng.choice(8, 3, replace=False)
    fn = jax.jit(per_device_vision_scatter)
    np.testing.assert_array_equal(fn(vis, jnp.asarray(idx), x), _scatter_vision(vis, jnp.asarray(idx), x))
    idx[0, 1] = 9  # row 0 (device 0) pointing into chunk 1
    assert np.isnan(np.asarray(fn(vis, jnp.asarray(idx), x))[:2]).all()
