"""The vocabulary head and cross entropy together, in token chunks: [tokens, vocab] never exists at once.

`head_nll_sum(hidden, kernel, targets, valid)` equals ``sum(valid * nll(hidden @ kernel, targets))`` with
``nll = logsumexp(logits) - logits[target]`` in float32 (`train.loss.token_nll`), but computes the logits
one chunk of sequence positions at a time (``lax.scan``). Its gradient is computed *in the forward pass*,
chunk by chunk, while that chunk's logits are at hand (``dlogits = softmax - onehot``, then
``dhidden = dlogits @ kernel.T`` and ``dkernel += hidden.T @ dlogits``), and the backward only scales it by
the incoming scalar cotangent. That is exact because the result is a sum with weights that carry no
gradient, and it costs no recomputation of the logits (a recomputing backward would add a third of the
head's FLOPs: 11% of bench-100m's train step). What stays between forward and backward is the gradient
itself ([tokens, hidden] and the kernel's shape, float32), not [tokens, vocab]. Frozen kernels (stage 1)
get no kernel-gradient matmul: `custom_vjp(symbolic_zeros=True)` tells the forward what is perturbed.

`head_token_nll` is the same chunked forward returning the per-token losses [B, S] (evaluation; its
autodiff would save every chunk's logits, use `head_nll_sum` for gradients).

Chunks are strided: chunk i holds positions i, i + n, i + 2n, ... of every row (``[B, S] -> [B, S/n, n]``,
scan over the last axis), so a batch sharded over (data, fsdp) and a sequence sharded over `sequence` in
contiguous blocks stay local to their devices in every chunk: no chunk slices a sharded axis.

The kernel is [D, V] (`lm_head/kernel`, ``kernel_vd=False``) or [V, D] (the tied embedding,
``kernel_vd=True``); matmuls run in `dtype` (the model's compute dtype) with float32 results.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero


def num_chunks(seq_len: int, chunk_len: int) -> int:
    """Chunks for `seq_len` positions of at most ~`chunk_len` each: the smallest divisor of seq_len that is
    >= ceil(seq_len / chunk_len) (chunk_len <= 0: one chunk)."""
    if chunk_len <= 0 or seq_len <= chunk_len:
        return 1
    n = -(-seq_len // chunk_len)
    while seq_len % n:
        n += 1
    return n


def _to_chunks(x, n: int):
    """[B, S, ...] -> [n, B, S/n, ...]: chunk i = positions i, i + n, ... (strided, see module doc)."""
    b, s = x.shape[:2]
    return jnp.moveaxis(x.reshape(b, s // n, n, *x.shape[2:]), 2, 0)


def _from_chunks(x):
    """[n, B, S/n, ...] -> [B, S, ...] (inverse of `_to_chunks`)."""
    n, b, c = x.shape[:3]
    return jnp.moveaxis(x, 0, 2).reshape(b, c * n, *x.shape[3:])


def _logits(h, w, kernel_vd: bool):
    """h [B, C, D] @ kernel -> [B, C, V] float32 (w already in the compute dtype)."""
    dims = (((2,), (1,)), ((), ())) if kernel_vd else (((2,), (0,)), ((), ()))
    return jax.lax.dot_general(h, w, dims, preferred_element_type=jnp.float32)


def _chunk_nll(h, w, t, kernel_vd: bool):
    """One chunk: (logits [B, C, V] f32, lse [B, C], nll [B, C])."""
    logits = _logits(h, w, kernel_vd)
    m = jnp.max(logits, axis=-1)
    lse = jnp.log(jnp.sum(jnp.exp(logits - m[..., None]), axis=-1)) + m
    picked = jnp.take_along_axis(logits, t[..., None], axis=-1)[..., 0]
    return logits, lse, lse - picked


def _check(hidden, kernel, targets, kernel_vd):
    d = hidden.shape[-1]
    if hidden.ndim != 3 or targets.shape != hidden.shape[:2]:
        raise ValueError(
            f"head loss: hidden {hidden.shape} must be [B, S, D] and targets {targets.shape} [B, S]"
        )
    if kernel.ndim != 2 or kernel.shape[1 if kernel_vd else 0] != d:
        want = "[V, D]" if kernel_vd else "[D, V]"
        raise ValueError(
            f"head loss: kernel {kernel.shape} must be {want} with D = {d} (kernel_vd={kernel_vd})"
        )


# ------------------------------------------------------------------------------ per-token losses (eval)
def head_token_nll(hidden, kernel, targets, *, kernel_vd: bool = False, dtype=None, chunk_len: int = 1024):
    """hidden [B, S, D], kernel [D, V] (or [V, D]), targets [B, S] int in [0, V) ->
    (nll [B, S] float32, argmax of the logits [B, S] int32). For evaluation (see module doc)."""
    _check(hidden, kernel, targets, kernel_vd)
    dtype = dtype or hidden.dtype
    n = num_chunks(hidden.shape[1], chunk_len)
    w = kernel.astype(dtype)

    def body(_, xs):
        h, t = xs
        logits, _, nll = _chunk_nll(h, w, t, kernel_vd)
        return None, (nll, jnp.argmax(logits, axis=-1).astype(jnp.int32))

    chunks = (_to_chunks(hidden.astype(dtype), n), _to_chunks(targets.astype(jnp.int32), n))
    _, (nll, argmax) = jax.lax.scan(body, None, chunks)
    return _from_chunks(nll), _from_chunks(argmax)


# ------------------------------------------------------------------------------ weighted sum (training)
def head_nll_sum(
    hidden, kernel, targets, valid, *, kernel_vd: bool = False, dtype=None, chunk_len: int = 1024
):
    """sum over positions with `valid` of the token nll: hidden [B, S, D], kernel [D, V] (or [V, D] with
    kernel_vd), targets [B, S] int (any value where not valid), valid [B, S] bool -> [] float32.

    Gradients flow to hidden and kernel (in their dtypes); targets and valid get none."""
    _check(hidden, kernel, targets, kernel_vd)
    spec = (bool(kernel_vd), jnp.dtype(dtype or hidden.dtype), num_chunks(hidden.shape[1], chunk_len))
    return _nll_sum(spec, hidden, kernel, jnp.where(valid, targets, 0).astype(jnp.int32), valid)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _nll_sum(spec, hidden, kernel, targets, valid):
    kernel_vd, dtype, n = spec
    w = kernel.astype(dtype)

    def body(total, xs):
        h, t, ok = xs
        nll = _chunk_nll(h, w, t, kernel_vd)[2]
        return total + jnp.sum(jnp.where(ok, nll, 0.0)), None

    chunks = (_to_chunks(hidden.astype(dtype), n), _to_chunks(targets, n), _to_chunks(valid, n))
    total, _ = jax.lax.scan(body, jnp.zeros((), jnp.float32), chunks)
    return total


def _nll_sum_fwd(spec, hidden, kernel, targets, valid):
    """Loss and its gradient (for cotangent 1) in one pass over the chunks."""
    kernel_vd, dtype, n = spec
    want_dw = kernel.perturbed
    hidden, kernel, targets, valid = hidden.value, kernel.value, targets.value, valid.value
    w = kernel.astype(dtype)

    def body(carry, xs):
        total, dw = carry
        h, t, ok = xs  # [B, C, D], [B, C], [B, C]
        logits, lse, nll = _chunk_nll(h, w, t, kernel_vd)
        iota = jax.lax.broadcasted_iota(jnp.int32, logits.shape, 2)
        dlogits = (jnp.exp(logits - lse[..., None]) - (iota == t[..., None])) * ok[..., None]
        d2 = dlogits.astype(dtype).reshape(-1, logits.shape[-1])  # [B*C, V]: 2-D matmuls (see layers.Dense)
        h2 = h.reshape(-1, h.shape[-1])  # [B*C, D]
        dh = jnp.matmul(d2, w if kernel_vd else w.T, preferred_element_type=jnp.float32)  # [B*C, D]
        if want_dw:  # [V, D] += d2^T h2, or [D, V] += h2^T d2
            dw = dw + (
                jnp.matmul(d2.T, h2, preferred_element_type=jnp.float32)
                if kernel_vd
                else jnp.matmul(h2.T, d2, preferred_element_type=jnp.float32)
            )
        total = total + jnp.sum(jnp.where(ok, nll, 0.0))
        return (total, dw), dh.reshape(h.shape).astype(hidden.dtype)

    dw0 = jnp.zeros(kernel.shape if want_dw else (), jnp.float32)
    chunks = (_to_chunks(hidden.astype(dtype), n), _to_chunks(targets, n), _to_chunks(valid, n))
    (total, dw), dh = jax.lax.scan(body, (jnp.zeros((), jnp.float32), dw0), chunks)
    return total, (_from_chunks(dh), dw.astype(kernel.dtype) if want_dw else None)


def _nll_sum_bwd(spec, res, g):
    dh, dw = res
    if isinstance(g, SymbolicZero):
        return None, None, None, None
    scaled = lambda x: (g * x.astype(jnp.float32)).astype(x.dtype)
    return scaled(dh), None if dw is None else scaled(dw), None, None


_nll_sum.defvjp(_nll_sum_fwd, _nll_sum_bwd, symbolic_zeros=True)
