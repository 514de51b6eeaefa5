"""Generation's weight layout (`generation_rules`): the FSDP mesh axes move from the weights' embed dims to
their tensor-parallel dims, so the decode loop moves activations instead of all-gathering whole weights at
every step; a dim that does not divide falls back to the training layout; the vocabulary head's logits come
from each device's vocab shard (`vocab_parallel_logits`) and equal the plain head's."""

import dataclasses

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from lingshu_jax import sharding
from lingshu_jax.infer.generate import generation_rules, place_params, vocab_parallel_logits
from lingshu_jax.model.config import preset
from lingshu_jax.model.vlm import Qwen25VL, init_params


@pytest.fixture(scope="module")
def mesh():
    return sharding.make_mesh({"fsdp": 4, "tensor": 2}, jax.devices()[:8])


def _spec(mesh, rules, names, shape):
    return sharding.logical_sharding(mesh, rules, names, shape).spec


def test_weights_shard_their_tensor_parallel_dims_over_fsdp_and_activations_keep_their_rows(mesh):
    rules = generation_rules(sharding.DEFAULT_RULES)
    assert generation_rules(rules) == rules  # idempotent
    fsdp_tp = ("tensor", "fsdp")
    assert _spec(mesh, rules, ("embed", "mlp"), (64, 128)) == P(None, fsdp_tp)
    assert _spec(mesh, rules, ("mlp", "embed"), (128, 64)) == P(fsdp_tp, None)
    assert _spec(mesh, rules, ("embed", "vocab"), (64, 1024)) == P(None, fsdp_tp)
    # activations: rows over (data, fsdp) as in training
    assert _spec(mesh, rules, ("batch", "seq", "act_embed"), (8, 4, 64)) == P(("data", "fsdp"), None, None)
    # a dim that does not divide 8 falls back to the training layout (FSDP on embed), not to replication
    assert _spec(mesh, rules, ("vis_embed", "vis_mlp"), (64, 342)) == P("fsdp", "tensor")
    # the KV cache [L, B, T, KVH, Dh] with 2 kv heads: rows over (data, fsdp), heads over tensor
    cache = _spec(mesh, rules, ("layers", "batch", None, "kv_heads", None), (2, 8, 16, 2, 8))
    assert cache == P(None, ("data", "fsdp"), None, "tensor", None)
    train = sharding.DEFAULT_RULES
    assert _spec(mesh, train, ("embed", "mlp"), (64, 128)) == P("fsdp", "tensor")  # training unchanged


@pytest.mark.parametrize("tied", [False, True])
def test_vocab_parallel_logits_equal_the_heads_logits_and_move_rows_not_the_head(mesh, tied):
    cfg = dataclasses.replace(preset("tiny"), tie_word_embeddings=tied)
    params = init_params(cfg, jax.random.key(0))
    module = Qwen25VL(cfg)
    hidden = np.random.default_rng(0).normal(size=(8, cfg.text.hidden_size)).astype(np.float32)
    want = module.apply({"params": params}, hidden[:, None], method=Qwen25VL.logits)[:, 0]
    rules = generation_rules(sharding.DEFAULT_RULES)
    fn = jax.jit(lambda p, h: module.apply({"params": p}, h, method=vocab_parallel_logits))
    with sharding.mesh_context(mesh, rules):
        placed = place_params(cfg, params, mesh, rules)
        rows = jax.device_put(hidden, NamedSharding(mesh, P(("data", "fsdp"))))
        got = fn(placed, rows)
        hlo = fn.lower(placed, rows).compile().as_text()
    assert np.abs(np.asarray(got) - np.asarray(want)).max() <= 1e-5
    assert got.sharding.is_equivalent_to(NamedSharding(mesh, P(("data", "fsdp"), "tensor")), 2)
    assert "all-to-all" in hlo
    head = cfg.text.vocab_size * cfg.text.hidden_size // 2  # a gathered head: at least half the [D, V] head
    gathered = [line for line in hlo.splitlines() if " all-gather(" in line or "all-gather-start(" in line]
    assert not [
        g
        for g in gathered
        if np.prod([int(d) for d in g.split("[")[1].split("]")[0].split(",") if d]) >= head
    ]
