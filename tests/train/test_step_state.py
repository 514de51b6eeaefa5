"""A train step returns a state with the avals (shape, dtype, sharding) it was given, so the jitted step
compiles once: with bf16 parameters Adam's moments must not switch dtype at step 1."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lingshu_jax.train.optimizer import make_optimizer, path_str, state_shardings
from lingshu_jax.train.trainer import train_step

VOCAB, DIM, B, S = 32, 16, 2, 8
OPTIM = {
    "groups": [("Dense_0/.*", None, "frozen"), (".*", 1e-3, "rest")],
    "weight_decay": 0.1,
    "clip_norm": 1.0,
}


class TinyLM(nn.Module):
    """Embedding -> Dense -> silu -> head, in the model's form for `train.step`: `apply(params, batch,
    return_hidden=...) -> (logits or hidden, cache)` and `vocab_head() -> (kernel [D, V], options)`."""

    param_dtype: str = "bfloat16"

    def setup(self):
        kw = {"dtype": self.param_dtype, "param_dtype": self.param_dtype}
        self.Embed_0 = nn.Embed(VOCAB, DIM, **kw)
        self.Dense_0 = nn.Dense(DIM, **kw)
        self.Dense_1 = nn.Dense(VOCAB, use_bias=False, **kw)

    def __call__(self, batch, return_hidden: bool = False):
        x = nn.silu(self.Dense_0(self.Embed_0(batch["input_ids"])))  # [B, S, D]
        return (x if return_hidden else self.Dense_1(x)), None  # [B, S, V]

    def vocab_head(self):
        return self.Dense_1.variables["params"]["kernel"], {"dtype": self.param_dtype, "chunk_len": 4}


def _batch():
    ids = np.random.default_rng(0).integers(0, VOCAB, (1, B, S)).astype(np.int32)  # [K=1, B, S]
    return {"input_ids": ids, "labels": ids, "segment_ids": np.ones_like(ids)}


def _state(model, tx, params):
    return {
        "step": jnp.zeros((), jnp.int32),
        "params": params,
        "opt_state": jax.jit(tx.init)(params),
        "bad_steps": jnp.zeros((), jnp.int32),
    }


def _avals(tree) -> dict:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {path_str(k): (x.shape, x.dtype, x.sharding) for k, x in leaves}


def _setup(param_dtype, mu_dtype=None):
    model = TinyLM(param_dtype)
    params = model.init(jax.random.key(0), {k: v[0] for k, v in _batch().items()})["params"]
    tx, info = make_optimizer(dict(OPTIM, mu_dtype=mu_dtype), params)
    return model, tx, info, params


@pytest.mark.parametrize("mu_dtype", [None, "bfloat16"])
def test_update_keeps_optimizer_state_avals_with_bf16_params(mu_dtype):
    """Abstract check (no compilation): float32 gradients into a bf16-parameter optimizer."""
    _, tx, _, params = _setup("bfloat16", mu_dtype)
    state = jax.eval_shape(tx.init, params)
    grads = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, jnp.float32), params)
    _, new_state = jax.eval_shape(tx.update, grads, state, params)
    before = {k: v[:2] for k, v in _avals(state).items()}
    assert before == {k: v[:2] for k, v in _avals(new_state).items()}
    moments = {k: v[1] for k, v in before.items() if "/mu/" in k or "/nu/" in k}
    assert moments and set(moments.values()) <= {jnp.dtype(jnp.float32), jnp.dtype(mu_dtype or "float32")}
    assert any("/nu/" in k for k in moments) and all(
        moments[k] == jnp.float32 for k in moments if "/nu/" in k
    )


@pytest.mark.parametrize("param_dtype", ["bfloat16", "float32"])
def test_train_step_keeps_state_avals_and_compiles_once(param_dtype):
    model, tx, info, params = _setup(param_dtype)
    step = jax.jit(
        functools.partial(train_step, model, tx, trainable=info.trainable_mask), donate_argnums=(0,)
    )
    state, batch = _state(model, tx, params), _batch()
    before = _avals(state)
    state, m = step(state, batch)
    assert bool(m["finite"]) and _avals(state) == before
    state, _ = step(state, batch)
    assert _avals(state) == before
    assert step._cache_size() == 1  # step 2 reused step 1's executable
    assert all(x.dtype == jnp.dtype(param_dtype) for x in jax.tree.leaves(state["params"]))


def test_sharded_state_moments_follow_params_and_step_keeps_shardings():
    """Parameters sharded over a 2-device mesh (vocab axis of the embedding and head): Adam's moments are
    sharded like their parameters (`state_shardings`), and the step returns every leaf with its input
    sharding, so the next call reuses the executable."""
    model, tx, info, params = _setup("bfloat16")
    mesh = Mesh(np.array(jax.devices()[:2]), ("model",))
    specs = {"Embed_0": PartitionSpec("model"), "Dense_1": PartitionSpec(None, "model")}
    p_shard = jax.tree_util.tree_map_with_path(
        lambda kp, _: NamedSharding(mesh, specs.get(path_str(kp).split("/")[0], PartitionSpec())), params
    )
    replicated = NamedSharding(mesh, PartitionSpec())
    opt_shard = state_shardings(tx, params, p_shard, replicated)
    state = {
        "step": jax.device_put(jnp.zeros((), jnp.int32), replicated),
        "params": jax.device_put(params, p_shard),
        "opt_state": jax.jit(tx.init, out_shardings=opt_shard)(jax.device_put(params, p_shard)),
        "bad_steps": jax.device_put(jnp.zeros((), jnp.int32), replicated),
    }
    before = _avals(state)
    mu = [v[2] for k, v in before.items() if "/mu/Embed_0/" in k or "/nu/Dense_1/" in k]
    assert len(mu) == 2 and all(not s.is_fully_replicated for s in mu)

    step = jax.jit(
        functools.partial(train_step, model, tx, trainable=info.trainable_mask), donate_argnums=(0,)
    )
    for _ in range(2):
        state, _ = step(state, _batch())
    after = _avals(state)
    assert {k: v[:2] for k, v in after.items()} == {k: v[:2] for k, v in before.items()}
    moved = [k for k in before if not before[k][2].is_equivalent_to(after[k][2], len(before[k][0]))]
    assert not moved
    assert step._cache_size() == 1
