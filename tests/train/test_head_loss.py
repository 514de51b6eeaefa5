"""Chunked vocabulary head + cross entropy (`train/head_loss.py`) equals the plain formula
(logits = hidden @ kernel, float32 log-softmax, gather, mask) in value and in the gradients of hidden and
kernel, for both kernel layouts, any chunking, masking, packed and padded rows; frozen kernels cost no
kernel-gradient matmul; the model's `loss_sums` / `token_losses` agree with the unchunked logits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lingshu_jax.model.config import preset
from lingshu_jax.model.vlm import Qwen25VL, init_params
from lingshu_jax.train.head_loss import head_nll_sum, head_token_nll, num_chunks
from lingshu_jax.train.loss import (
    IGNORE,
    cross_entropy_sums,
    masked_token_nll,
    next_token_targets,
)
from lingshu_jax.train.step import loss_sums, token_losses

B, S, D, V = 3, 20, 16, 301


def _data(seed=0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    hidden = jnp.asarray(rng.normal(size=(B, S, D)), dtype)
    kernel = jnp.asarray(2.0 * rng.normal(size=(D, V)), dtype)  # wide logits: exercises the max shift
    targets = rng.integers(0, V, (B, S))
    targets[0, 3] = V - 1
    valid = rng.random((B, S)) < 0.7
    valid[1, :] = False  # a row with nothing labelled (padding)
    valid[2, ::5] = False
    return hidden, kernel, jnp.asarray(targets, jnp.int32), jnp.asarray(valid)


def _plain_sum(hidden, kernel_dv, targets, valid):
    logits = jnp.einsum("bsd,dv->bsv", hidden.astype(jnp.float32), kernel_dv.astype(jnp.float32))
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    return jnp.sum(jnp.where(valid, nll, 0.0))


def _close(a, b, tol=1e-5):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(np.abs(b).max(), 1e-6))


def test_num_chunks_divides_the_sequence():
    assert num_chunks(20, 0) == 1 and num_chunks(20, 20) == 1 and num_chunks(20, 64) == 1
    assert num_chunks(20, 4) == 5 and num_chunks(20, 7) == 4 and num_chunks(8192, 1024) == 8
    assert num_chunks(13, 4) == 13  # a prime length: one position per chunk, still exact


@pytest.mark.parametrize("kernel_vd", [False, True], ids=["kernel_DV", "tied_VD"])
@pytest.mark.parametrize("chunk_len", [0, 4, 7])
def test_sum_and_gradients_equal_plain_formula_fp32(kernel_vd, chunk_len):
    hidden, kernel, targets, valid = _data()
    w = kernel.T if kernel_vd else kernel
    with jax.default_matmul_precision("highest"):
        ours = lambda h, w: head_nll_sum(h, w, targets, valid, kernel_vd=kernel_vd, chunk_len=chunk_len)
        plain = lambda h, w: _plain_sum(h, w.T if kernel_vd else w, targets, valid)
        _close(ours(hidden, w), plain(hidden, w), 1e-6)
        (gh, gw), (rh, rw) = jax.grad(ours, (0, 1))(hidden, w), jax.grad(plain, (0, 1))(hidden, w)
        jit_gh = jax.jit(jax.grad(ours, (0, 1)))(hidden, w)[0]
    assert gh.dtype == gw.dtype == jnp.float32 and gw.shape == w.shape
    _close(gh, rh)
    _close(gw, rw)
    _close(jit_gh, rh)
    assert not np.asarray(gh)[~np.asarray(valid)].any()  # unlabelled positions get exactly zero gradient


def test_gradient_scales_with_the_cotangent_and_targets_are_ignored_where_invalid():
    hidden, kernel, targets, valid = _data(1)
    junk = jnp.where(valid, targets, 7)  # any target value where not valid
    with jax.default_matmul_precision("highest"):
        f = lambda h: 0.25 * head_nll_sum(h, kernel, junk, valid, chunk_len=5)
        ref = lambda h: 0.25 * _plain_sum(h, kernel, jnp.where(valid, targets, 0), valid)
        _close(jax.grad(f)(hidden), jax.grad(ref)(hidden))


def _dot_output_shapes(jaxpr) -> list[tuple]:
    """Shapes of every dot_general result in a jaxpr, sub-jaxprs (scan bodies, custom rules) included."""
    out = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            out.append(tuple(eqn.outvars[0].aval.shape))
        for p in eqn.params.values():
            for j in p if isinstance(p, (list, tuple)) else [p]:
                inner = getattr(j, "jaxpr", None)
                if inner is not None and hasattr(inner, "eqns"):
                    out += _dot_output_shapes(inner)
                elif hasattr(j, "eqns"):
                    out += _dot_output_shapes(j)
    return out


def test_frozen_kernel_gets_no_kernel_gradient_matmul():
    hidden, kernel, targets, valid = _data(2)
    with jax.default_matmul_precision("highest"):
        f = lambda h, w: head_nll_sum(h, w, targets, valid, chunk_len=4)
        g_frozen = jax.grad(lambda h: f(h, kernel))(hidden)  # kernel closed over: not perturbed
        _close(g_frozen, jax.grad(lambda h: _plain_sum(h, kernel, targets, valid))(hidden))
        frozen = _dot_output_shapes(jax.make_jaxpr(jax.grad(lambda h: f(h, kernel)))(hidden).jaxpr)
        trained = _dot_output_shapes(jax.make_jaxpr(jax.grad(f, (0, 1)))(hidden, kernel).jaxpr)
    assert (D, V) in trained and (D, V) not in frozen


def test_bf16_inputs_give_bf16_gradients_and_a_float32_loss():
    hidden, kernel, targets, valid = _data(3, jnp.bfloat16)
    total, (gh, gw) = jax.value_and_grad(
        lambda h, w: head_nll_sum(h, w, targets, valid, chunk_len=4), (0, 1)
    )(hidden, kernel)
    assert total.dtype == jnp.float32 and gh.dtype == gw.dtype == jnp.bfloat16
    ref = _plain_sum(hidden, kernel, targets, valid)  # float32 logits from the same bf16 values
    assert abs(float(total) - float(ref)) <= 1e-3 * abs(float(ref))


@pytest.mark.parametrize("kernel_vd", [False, True], ids=["kernel_DV", "tied_VD"])
def test_token_nll_and_argmax_equal_plain_formula(kernel_vd):
    hidden, kernel, targets, _ = _data(4)
    with jax.default_matmul_precision("highest"):
        nll, argmax = head_token_nll(
            hidden, kernel.T if kernel_vd else kernel, targets, kernel_vd=kernel_vd, chunk_len=6
        )
        logits = jnp.einsum("bsd,dv->bsv", hidden, kernel)
    ref = -jnp.take_along_axis(jax.nn.log_softmax(logits, -1), targets[..., None], -1)[..., 0]
    _close(nll, ref, 1e-6)
    np.testing.assert_array_equal(np.asarray(argmax), np.asarray(jnp.argmax(logits, -1)))


def test_shape_errors_name_the_expected_layout():
    hidden, kernel, targets, valid = _data()
    with pytest.raises(ValueError, match=r"kernel \(16, 301\) must be \[V, D\]"):
        head_nll_sum(hidden, kernel, targets, valid, kernel_vd=True)
    with pytest.raises(ValueError, match=r"targets \(3, 19\)"):
        head_nll_sum(hidden, kernel, targets[:, 1:], valid)


# ------------------------------------------------------------------------------ through the model
def _packed_batch(cfg, seq=24):
    """Two text rows: row 0 packs two segments then padding, row 1 one segment; prompts unlabelled."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 900, (2, seq)).astype(np.int32)
    seg = np.zeros((2, seq), np.int32)
    seg[0, :10], seg[0, 10:19], seg[1, :] = 1, 2, 1
    pos = np.zeros((3, 2, seq), np.int32)
    for r in range(2):
        for s in (1, 2):
            where = np.flatnonzero(seg[r] == s)
            pos[:, r, where] = np.arange(len(where))
    labels = np.where(seg > 0, ids, IGNORE)
    labels[0, :4] = labels[0, 10:13] = labels[1, :6] = IGNORE  # prompts
    return {"input_ids": ids, "segment_ids": seg, "position_ids": pos, "labels": labels.astype(np.int32)}


@pytest.mark.parametrize("name", ["tiny", "tiny-tied"])
def test_model_loss_sums_equal_unchunked_logits_on_packed_padded_rows(name):
    cfg = preset(name, loss_chunk_len=5)  # 24 positions -> 6 chunks of 4
    params = jax.jit(lambda r: init_params(cfg, r))(jax.random.key(1))  # jitted: eager init is slow
    model, batch = Qwen25VL(cfg), _packed_batch(cfg)
    targets = next_token_targets(batch["labels"], batch["segment_ids"])

    def plain(p):
        logits, _ = model.apply({"params": p}, batch)
        return cross_entropy_sums(logits, targets)

    @jax.jit
    def both(p):  # one compiled program for everything compared (eager tracing of two models is slow)
        grads = jax.grad(lambda q: loss_sums(model, q, batch)[0])(p)
        rgrads = jax.grad(lambda q: plain(q)[0])(p)
        logits, _ = model.apply({"params": p}, batch)
        return loss_sums(model, p, batch), plain(p), grads, rgrads, token_losses(model, p, batch), logits

    with jax.default_matmul_precision("highest"):
        (total, count), (rtotal, rcount), grads, rgrads, (nll, hit, valid), logits = both(params)
    assert float(count) == float(rcount) == float((np.asarray(targets) != IGNORE).sum())
    _close(total, rtotal, 1e-6)
    for (path, g), r in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree_util.tree_leaves(rgrads)):
        assert np.abs(np.asarray(g) - np.asarray(r)).max() <= 1e-5 * max(np.abs(np.asarray(r)).max(), 1e-6), (
            jax.tree_util.keystr(path)
        )
    rnll, rvalid = masked_token_nll(logits, targets)
    _close(nll, rnll, 1e-5)
    np.testing.assert_array_equal(np.asarray(valid), np.asarray(rvalid))
    np.testing.assert_array_equal(np.asarray(hit), np.asarray(jnp.argmax(logits, -1) == targets))
