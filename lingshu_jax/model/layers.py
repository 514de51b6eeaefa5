"""Small building blocks with logical axis names on every parameter (MaxText-style)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from lingshu_jax.model.config import ModelConfig
from lingshu_jax.model.remat import checkpoint_policy

_INIT = nn.initializers.normal(stddev=0.02)


def dtype_of(name: str):
    return jnp.dtype(name)


class Dense(nn.Dense):
    """nn.Dense computed as one 2-D matmul: x [..., in] -> [N, in] @ kernel [in, out] -> [..., out].

    Same parameters and result as nn.Dense. With 3-D activations XLA:CPU canonicalises the kernel gradient
    (a dot contracting batch and sequence) by physically transposing the [B, S, out] activation gradient
    before the matmul; on [N, in] x [N, out] it calls the matmul directly (measured: the text decoder's
    MLP spent ~0.9 s per bench-100m step in those transposes)."""

    def __call__(self, x):
        lead = x.shape[:-1]
        y = super().__call__(x.reshape(-1, x.shape[-1]))  # [N, out]
        return y.reshape(*lead, self.features)


def dense(features: int, names: tuple[str, str], *, use_bias: bool, dtype, param_dtype, name: str):
    """Dense with kernel [in, out] named `names` and bias named `names[1]`."""
    return Dense(
        features,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
        kernel_init=nn.with_logical_partitioning(_INIT, names),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), (names[1],)),
    )


class RMSNorm(nn.Module):
    """RMSNorm as transformers computes it: normalise in float32, cast back, then scale."""

    eps: float = 1e-6
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32
    axis_name: str = "norm"

    @nn.compact
    def __call__(self, x):
        scale = self.param(
            "scale",
            nn.with_logical_partitioning(nn.initializers.ones_init(), (self.axis_name,)),
            (x.shape[-1],),
            self.param_dtype,
        )
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return scale.astype(self.dtype) * y.astype(self.dtype)


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)); the vision MLP has biases, the text MLP does not."""

    hidden: int
    inner: int
    use_bias: bool
    names: tuple[str, str]  # (embed axis, mlp axis)
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        kw = {"use_bias": self.use_bias, "dtype": self.dtype, "param_dtype": self.param_dtype}
        gate = dense(self.inner, self.names, name="gate_proj", **kw)(x)
        up = dense(self.inner, self.names, name="up_proj", **kw)(x)
        return dense(self.hidden, self.names[::-1], name="down_proj", **kw)(nn.silu(gate) * up)


def maybe_remat(module_cls, policy_name: str, unrolled: bool = False):
    """Wraps a layer class in nn.remat with the named policy (`model/remat.py`); 'none' returns it as is.

    `unrolled`: the layer runs in a fully unrolled scan (`ModelConfig.unroll_layers`). A rolled scan keeps
    XLA from merging the recomputation with the forward pass; unrolled, only `prevent_cse` does (without it
    XLA's CSE undoes the remat: the same temporaries as no remat at all)."""
    policy = checkpoint_policy(policy_name)
    if policy is None:
        return module_cls
    return nn.remat(module_cls, policy=policy, prevent_cse=unrolled)


def maybe_checkpoint(fn, policy_name: str, unrolled: bool = False):
    """jax.checkpoint of a pure function according to the named remat policy ('none': fn unchanged);
    `unrolled` as in `maybe_remat`."""
    policy = checkpoint_policy(policy_name)
    return fn if policy is None else jax.checkpoint(fn, policy=policy, prevent_cse=unrolled)


def compute_dtypes(config: ModelConfig):
    """(text compute dtype, vision compute dtype, param dtype)."""
    return (
        dtype_of(config.dtype),
        dtype_of(config.vision_dtype or config.dtype),
        dtype_of(config.param_dtype),
    )
