"""Sharded load onto an 8-device CPU mesh (tests/conftest.py sets 8 host devices before jax starts):
each device gets its slice read straight from the file, with the requested shardings."""

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from lingshu_jax.convert import hf_to_jax, keymap, load_params
from lingshu_jax.convert.safetensors_io import SafetensorsReader
from lingshu_jax.model.config import preset

SPECS = {
    "model/embed_tokens/embedding": P("fsdp", None),
    "model/layers/mlp/gate_proj/kernel": P(None, "fsdp", "tensor"),
    "model/layers/mlp/up_proj/kernel": P(None, "fsdp", "tensor"),
    "model/layers/mlp/down_proj/kernel": P(None, "tensor", "fsdp"),
    "model/layers/self_attn/q_proj/kernel": P("tensor", None, "fsdp"),
    "visual/patch_embed/kernel": P("fsdp", "tensor"),
    "visual/blocks/attn/qkv/kernel": P(None, None, "tensor"),
    "lm_head/kernel": P(None, ("fsdp", "tensor")),
}


@pytest.fixture(scope="module")
def mesh():
    assert jax.device_count() >= 8, "tests/conftest.py must set --xla_force_host_platform_device_count=8"
    return Mesh(np.array(jax.devices()[:8]).reshape(4, 2), ("fsdp", "tensor"))


def _shardings(mesh, cfg):
    tree: dict = {}
    for s in keymap.param_specs(cfg):
        keymap.tree_set(tree, s.path, NamedSharding(mesh, SPECS.get(s.name, P())))
    return tree


def test_sharded_load_has_requested_shardings_and_single_device_values(
    hf_checkpoint, mesh, monkeypatch, tmp_path
):
    hf_dir, _ = hf_checkpoint("tiny")
    reference = hf_to_jax(hf_dir)

    def no_whole_tensor_reads(*a, **k):
        raise AssertionError("sharded load must read slices only")

    monkeypatch.setattr(SafetensorsReader, "iter_blocks", no_whole_tensor_reads)
    shardings = _shardings(mesh, preset("tiny"))
    params = hf_to_jax(hf_dir, out_dir=str(tmp_path), shardings=shardings)
    for s in keymap.param_specs(preset("tiny")):
        got, want = keymap.tree_get(params, s.path), keymap.tree_get(reference, s.path)
        assert got.sharding == keymap.tree_get(shardings, s.path), s.name
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=s.name)
        for shard in got.addressable_shards:  # each device holds exactly its block
            np.testing.assert_array_equal(
                np.asarray(shard.data), np.asarray(want)[shard.index], err_msg=s.name
            )
    emb = params["model"]["embed_tokens"]["embedding"]
    assert emb.addressable_shards[0].data.shape == (1024 // 4, 64)


def test_sharded_restore_of_the_orbax_checkpoint(hf_checkpoint, mesh, tmp_path):
    hf_dir, _ = hf_checkpoint("tiny")
    reference = hf_to_jax(hf_dir, out_dir=str(tmp_path), return_params=True)
    shardings = _shardings(mesh, preset("tiny"))
    restored = load_params(str(tmp_path), shardings=shardings)
    for s in keymap.param_specs(preset("tiny")):
        got = keymap.tree_get(restored, s.path)
        assert got.sharding == keymap.tree_get(shardings, s.path), s.name
        np.testing.assert_array_equal(
            np.asarray(got), np.asarray(keymap.tree_get(reference, s.path)), err_msg=s.name
        )
