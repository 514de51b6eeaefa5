"""Generation on the 8-device simulated mesh equals single-device generation; the KV cache is sharded."""

import jax
import numpy as np

from lingshu_jax import sharding
from lingshu_jax.infer.generate import (
    TRACES,
    Buckets,
    batch_shards,
    compiled_program,
    place_params,
    prepare_generation_batch,
)
from tests.infer.conftest import PAD
from tests.infer.test_generate_vs_transformers import CASES, _ours


def test_sharded_greedy_equals_unsharded_and_cache_is_split(ours, processor):
    inputs = processor(CASES["left_padded_batch"]())  # 3 rows: padded to 4 for the 4-way batch axis
    mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    ref = _ours(ours, inputs)
    got = _ours(ours, inputs, mesh=mesh)
    np.testing.assert_array_equal(got["tokens"], ref["tokens"])
    np.testing.assert_array_equal(got["lengths"], ref["lengths"])

    key = next(k for k in TRACES if k.mesh is mesh)
    batch, _ = prepare_generation_batch(ours.config, inputs, PAD, Buckets(), batch_shards(mesh, key.rules))
    with sharding.mesh_context(mesh, key.rules):
        compiled = (
            compiled_program(key)
            .lower(
                place_params(ours.config, ours.params, mesh),
                sharding.global_batch(batch, mesh, key.rules),
                jax.random.key(0),
            )
            .compile()
        )
    t = ours.config.text
    per_device = f"f32[{t.num_hidden_layers},1,{key.cache_len},1,{t.head_dim}]"  # batch 4 / 4, kv heads 2 / 2
    loops = [line for line in compiled.as_text().splitlines() if " while(" in line]
    assert any(per_device in line for line in loops), per_device  # the decode loop carries the cache shards
