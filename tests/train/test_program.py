"""The trainer runs exactly the program that `build_train_program(...).lower()` (the AOT tool's input) compiles:
the step the trainer calls, on the arrays its data pipeline delivers, lowers to the same HLO."""

import dataclasses

import jax
import numpy as np
import pytest

from configs import demo
from lingshu_jax import sharding
from lingshu_jax.train import program as program_lib
from lingshu_jax.train import trainer


def _spec(x):
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One demo step through `trainer.train`; records the program it built and the specs of its step's inputs."""
    root = tmp_path_factory.mktemp("prog")
    c = demo.get_config(f"stage=3,root={root},steps=1")
    c.init_from = ""
    c.train.progress = False
    c.train.grad_accum = 2
    c.eval.every = 0
    seen = {}
    build = program_lib.build_train_program

    def build_and_record(config, mesh, rules=None):
        prog = build(config, mesh, rules)
        real_step = prog.step

        def step(state, batch):
            seen["args"] = jax.tree.map(_spec, (state, batch))
            return real_step(state, batch)

        step.lower = real_step.lower
        seen["program"] = dataclasses.replace(prog, step=step)
        return seen["program"]

    mp = pytest.MonkeyPatch()
    mp.setattr(trainer, "build_train_program", build_and_record)
    try:
        trainer.train(c, str(root / "run"))
    finally:
        mp.undo()
    return c, seen


def test_trainer_step_lowers_to_the_same_hlo_as_the_abstract_program(recorded):
    config, seen = recorded
    prog = seen["program"]
    with sharding.mesh_context(prog.mesh, prog.rules):
        ran = prog.step.lower(*seen["args"]).as_text()
    fresh = program_lib.build_train_program(config, sharding.make_mesh(config.mesh))
    assert fresh.lower().as_text() == ran


def test_abstract_batch_matches_what_the_pipeline_delivers(recorded):
    config, seen = recorded
    delivered = seen["args"][1]
    expected = seen["program"].abstract_batch()
    assert sorted(delivered) == sorted(expected)
    for k, v in delivered.items():
        assert (v.shape, v.dtype, v.sharding) == (
            expected[k].shape,
            expected[k].dtype,
            expected[k].sharding,
        ), k
    assert delivered["input_ids"].shape == (2, config.data.batch_size, config.data.seq_len)


def test_host_share_of_the_global_batch_is_checked():
    d = {"batch_size": 8, "patch_budget": 1024}
    assert program_lib.host_data_config(d, 2) == {"batch_size": 4, "patch_budget": 512}
    with pytest.raises(ValueError, match="data.batch_size=8"):
        program_lib.host_data_config(d, 3)
    with pytest.raises(ValueError, match="data.patch_budget=1028"):
        program_lib.host_data_config({"batch_size": 2, "patch_budget": 1028}, 2)
    assert np.dtype(program_lib.batch_spec(d, _tiny(), 1)["pixel_values"].dtype) == np.uint8


def _tiny():
    from lingshu_jax.model.config import preset

    return preset("tiny")


def test_splash_needs_one_vision_chunk_per_stream_shard():
    """attention_impl="splash" attends per device: the trainer refuses a stream not laid out per device."""
    c = demo.get_config("stage=2,root=/nonexistent,steps=1")
    c.init_from = ""
    c.model.attention_impl = "splash"
    c.mesh.fsdp = 4
    c.mesh.data = 1
    c.data.batch_size = 4
    c.data.patch_budget = 4 * 256
    mesh = sharding.make_mesh(c.mesh, jax.devices()[:4])
    with pytest.raises(ValueError, match="data.vision_chunks=4"):
        program_lib.build_train_program(c, mesh)
    c.data.vision_chunks = 4
    program_lib.build_train_program(c, mesh)
    assert program_lib.host_data_config(c.data, 2)["vision_chunks"] == 2


def test_chunked_full_vision_attention_needs_data_laid_out_in_as_many_chunks():
    """model.vision_attention_chunks=2: the full vision layers attend within 2 chunks of the stream, so the
    trainer refuses data whose stream is not laid out in a multiple of 2 chunks, naming the key to set."""
    c = demo.get_config("stage=2,root=/nonexistent,steps=1")
    c.init_from = ""
    c.model.vision_attention_chunks = 2
    c.data.batch_size = 2
    c.data.patch_budget = 2 * 256
    mesh = sharding.make_mesh(c.mesh, jax.devices()[:1])
    with pytest.raises(ValueError, match=r"set data.vision_chunks to a multiple of it \(got 1\)"):
        program_lib.build_train_program(c, mesh)
    c.data.vision_chunks = 2
    program = program_lib.build_train_program(c, mesh)
    assert program.model_config.vision_attention_chunks == 2
