"""Sharded execution equals single-device execution; parameter shardings follow the logical rules."""

import jax
import numpy as np
import pytest

from lingshu_jax import sharding
from lingshu_jax.model.config import preset
from lingshu_jax.model.vlm import Qwen25VL, abstract_params, init_params, prepare_inputs
from lingshu_jax.train.step import loss_and_grads


def _batch(cfg, rows=8, seq=40, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 900, (rows, seq)).astype(np.int32)
    mask = np.ones_like(ids)
    grids = []
    for r in range(rows):  # every row: some left padding and one image of 2x2 merged tokens
        pad = r % 3
        mask[r, :pad] = 0
        ids[r, pad + 2] = cfg.vision_start_token_id
        ids[r, pad + 3 : pad + 7] = cfg.image_token_id
        ids[r, pad + 7] = cfg.vision_end_token_id
        grids.append([1, 4, 4])
    pix = rng.standard_normal((16 * rows, cfg.vision.patch_dim)).astype(np.float32)
    batch = prepare_inputs(cfg, ids, mask, pixel_values=pix, image_grid_thw=np.array(grids))
    labels = np.where(mask == 1, ids, -100)
    labels[ids == cfg.image_token_id] = -100
    batch["labels"] = labels.astype(np.int32)
    return batch


@pytest.fixture(scope="module")
def setup():
    cfg = preset(
        "tiny", loss_chunk_len=8
    )  # 5 loss chunks of 8 positions: sharded like the batch and sequence
    params = init_params(cfg, jax.random.key(0))
    batch = _batch(cfg)
    model = Qwen25VL(cfg)
    loss, grads = jax.jit(lambda p, b: loss_and_grads(model, p, b))(params, batch)
    return cfg, model, params, batch, loss, grads


@pytest.mark.parametrize(
    "axes",
    [
        dict(data=8),
        dict(fsdp=8),
        dict(fsdp=4, tensor=2),
        dict(data=2, fsdp=2, tensor=2),
        dict(fsdp=4, sequence=2),
    ],
)
def test_loss_and_grads_on_mesh_equal_single_device(setup, axes):
    cfg, model, params, batch, loss1, grads1 = setup
    mesh = sharding.make_mesh(axes)
    rules = sharding.DEFAULT_RULES
    p_sh = sharding.param_shardings(abstract_params(cfg, boxed=True), mesh, rules)
    with sharding.mesh_context(mesh, rules):
        gparams = jax.device_put(params, p_sh)
        gbatch = sharding.global_batch(batch, mesh, rules)
        step = jax.jit(
            lambda p, b: loss_and_grads(model, p, b), in_shardings=(p_sh, None), out_shardings=(None, p_sh)
        )
        loss, grads = step(gparams, gbatch)
    assert abs(float(loss) - float(loss1)) <= 1e-5 * abs(float(loss1))
    for (path, g1), g in zip(jax.tree_util.tree_leaves_with_path(grads1), jax.tree_util.tree_leaves(grads)):
        g1, g = np.asarray(g1), np.asarray(g)
        assert np.abs(g - g1).max() <= 1e-5 * max(np.abs(g1).max(), 1e-6), jax.tree_util.keystr(path)
    # the weights really are distributed: the embedding is split whenever fsdp or tensor > 1
    emb = gparams["model"]["embed_tokens"]["embedding"]
    expected_shards = axes.get("fsdp", 1) * axes.get("tensor", 1)
    assert len({str(s.index) for s in emb.addressable_shards}) == expected_shards


def test_non_divisible_dimension_falls_back_to_replication(caplog):
    mesh = sharding.make_mesh(dict(tensor=8))
    cfg = preset(
        "tiny"
    )  # 2 KV heads * 16 = 32 divisible by 8; vision qkv 96 yes; vocab 1024 yes; mlp_2 out 64
    ab = abstract_params(
        cfg.replace(text=cfg.text.__class__(**{**cfg.text.__dict__, "intermediate_size": 132})), boxed=True
    )
    with caplog.at_level("WARNING"):
        sh = sharding.param_shardings(ab, mesh, sharding.DEFAULT_RULES)
    assert sh["model"]["layers"]["mlp"]["gate_proj"]["kernel"].spec == jax.sharding.PartitionSpec(
        None, "fsdp", None
    )
    assert "does not divide" in caplog.text and "gate_proj" in caplog.text


def test_mesh_minus_one_fills_and_errors_name_the_problem():
    assert sharding.mesh_shape({"fsdp": -1, "tensor": 2}, 8) == dict(data=1, fsdp=4, tensor=2, sequence=1)
    with pytest.raises(ValueError, match="needs 16 devices"):
        sharding.mesh_shape({"fsdp": 8, "tensor": 2}, 8)
    with pytest.raises(ValueError, match="only one axis"):
        sharding.mesh_shape({"fsdp": -1, "tensor": -1}, 8)
    with pytest.raises(ValueError, match="unknown mesh axis 'model'"):
        sharding.rules_from_config([["embed", "model"]])


def test_7b_shardings_on_a_256_device_mesh_shard_every_large_matrix():
    mesh = sharding.abstract_mesh({"fsdp": 64, "tensor": 4}, 256)
    rows = sharding.describe_shardings(
        abstract_params(preset("qwen2.5-vl-7b"), boxed=True), mesh, sharding.DEFAULT_RULES
    )
    large = [r for r in rows if r["bytes"] >= 4 << 20]
    assert large and all(any(a is not None for a in r["spec"]) for r in large)
    # the big matrices are split over both axes (fsdp x tensor); nothing large is replicated by accident
    assert all(r["bytes_per_device"] * 256 == r["bytes"] for r in large if r["bytes"] >= 64 << 20)
    total, per_device = sum(r["bytes"] for r in rows), sum(r["bytes_per_device"] for r in rows)
    assert per_device < 1.02 * total / 256


@pytest.mark.parametrize("policy", ["full", "save_dots", "save_qkv_attn"])
def test_remat_policies_give_the_same_loss_and_gradients(setup, policy):
    cfg, _, params, batch, loss1, grads1 = setup
    model = Qwen25VL(cfg.replace(remat_policy=policy, vision_remat_policy=policy))
    loss, grads = jax.jit(lambda p, b: loss_and_grads(model, p, b))(params, batch)
    assert abs(float(loss) - float(loss1)) <= 1e-6 * abs(float(loss1))
    for g1, g in zip(jax.tree_util.tree_leaves(grads1), jax.tree_util.tree_leaves(grads)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(g1), rtol=1e-5, atol=1e-7)


def test_unrolled_layers_give_the_same_loss_and_gradients_without_the_layer_loops(setup):
    cfg, _, params, batch, loss1, grads1 = setup
    fn = lambda m: jax.jit(lambda p, b: loss_and_grads(m, p, b))
    scanned, unrolled = (
        fn(Qwen25VL(cfg)),
        fn(Qwen25VL(cfg.replace(unroll_layers=True, vision_unroll_layers=True))),
    )
    loss, grads = unrolled(params, batch)
    assert abs(float(loss) - float(loss1)) <= 1e-6 * abs(float(loss1))
    for g1, g in zip(jax.tree_util.tree_leaves(grads1), jax.tree_util.tree_leaves(grads)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(g1), rtol=1e-5, atol=1e-7)
    loops = lambda f: f.lower(params, batch).as_text().count("stablehlo.while")
    # forward + backward of the decoder and of each run of vision blocks are loops when scanned; the
    # chunked vocabulary head stays one
    assert loops(unrolled) < loops(scanned)


def test_remat_of_unrolled_layers_still_saves_memory_instead_of_being_merged_back_by_xla(setup):
    """Unrolled, only `prevent_cse` keeps XLA's CSE from merging a layer's recomputation with its forward
    pass, which silently undoes remat "save_dots": without it the compiled step's temporaries are exactly
    those of no remat at all (measured: 14,484,032 bytes either way on this model)."""
    cfg, _, params, batch, *_ = setup

    def temporaries(**kw):
        model = Qwen25VL(cfg.replace(unroll_layers=True, vision_unroll_layers=True, **kw))
        compiled = jax.jit(lambda p, b: loss_and_grads(model, p, b)).lower(params, batch).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    none = temporaries()
    assert temporaries(remat_policy="save_dots") < none  # the decoder layers' remat
    assert temporaries(vision_remat_policy="save_dots") < none  # the vision blocks' remat


def test_dcn_mesh_puts_each_slice_in_one_contiguous_block_along_the_dcn_axis():
    """mesh.dcn.data=2 on 8 CPU devices: 2 slices of 4 (devices 0-3, 4-7); data = 2 slices x 1, fsdp 4 within."""
    from configs.common import base_config

    c = base_config()
    c.mesh.dcn.data = 2  # what --config.mesh.dcn.data=2 sets
    c.mesh.fsdp = -1
    mesh = sharding.make_mesh(c.mesh)
    assert dict(mesh.shape) == {"data": 2, "fsdp": 4, "tensor": 1, "sequence": 1}
    ids = np.vectorize(lambda d: d.id)(mesh.devices)
    assert sorted(ids[0].ravel()) == [0, 1, 2, 3] and sorted(ids[1].ravel()) == [4, 5, 6, 7]
    c.mesh.dcn.data, c.mesh.dcn.fsdp, c.mesh.tensor = 1, 2, 2  # fsdp spans slices: slice-major
    ids = np.vectorize(lambda d: d.id)(sharding.make_mesh(c.mesh).devices)[0, :, :, 0]  # [fsdp 4, tensor 2]
    assert sorted(ids[:2].ravel()) == [0, 1, 2, 3] and sorted(ids[2:].ravel()) == [4, 5, 6, 7]
    with pytest.raises(ValueError, match="3 slices do not divide 8 devices"):
        c.mesh.dcn.fsdp = 3
        sharding.make_mesh(c.mesh)
