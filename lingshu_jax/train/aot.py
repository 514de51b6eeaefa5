"""Ahead-of-time compilation of the train step on abstract inputs (no parameter memory).

Used to report compile time for full-size configs on a CPU, and to show that `nn.scan` keeps it
independent of the number of layers.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from lingshu_jax.model.config import ModelConfig
from lingshu_jax.model.vlm import Qwen25VL, abstract_params, dummy_batch
from lingshu_jax.train.optimizer import make_optimizer
from lingshu_jax.train.trainer import train_step


def abstract_batch(config: ModelConfig, batch: int, seq: int, patches: int, micro: int = 1) -> dict:
    """ShapeDtypeStructs of a training batch [micro, batch, seq] with a vision stream of `patches` rows."""
    example = dummy_batch(config, batch=1, seq=1)
    shapes = {
        "input_ids": (batch, seq),
        "segment_ids": (batch, seq),
        "labels": (batch, seq),
        "vision_token_index": (batch, seq),
        "position_ids": (3, batch, seq),
        "pixel_values": (patches, config.vision.patch_dim),
        "vision_pos": (patches, 2),
        "window_segments": (patches,),
        "frame_segments": (patches,),
    }
    dtypes = {k: np.asarray(v).dtype for k, v in example.items()}
    return {k: jax.ShapeDtypeStruct((micro, *s), dtypes.get(k, np.int32)) for k, s in shapes.items()}


def compile_train_step(
    config: ModelConfig, *, batch: int = 1, seq: int = 2048, patches: int = 4096, micro: int = 1
) -> dict:
    """Lowers and compiles `train_step` for `config` on abstract inputs; returns timings in seconds."""
    model = Qwen25VL(config)
    params = abstract_params(config)
    optim = {"name": "adamw", "clip_norm": 1.0, "groups": [(".*", {"type": "constant", "peak": 1e-5})]}
    tx, _ = make_optimizer(optim, params)
    state = {
        "step": jax.ShapeDtypeStruct((), jnp.int32),
        "params": params,
        "opt_state": jax.eval_shape(tx.init, params),
        "bad_steps": jax.ShapeDtypeStruct((), jnp.int32),
    }
    fn = jax.jit(functools.partial(train_step, model, tx), donate_argnums=(0,))
    t0 = time.perf_counter()
    lowered = fn.lower(state, abstract_batch(config, batch, seq, patches, micro))
    t1 = time.perf_counter()
    lowered.compile()
    t2 = time.perf_counter()
    return {
        "lower_s": t1 - t0,
        "compile_s": t2 - t1,
        "layers": config.text.num_hidden_layers,
        "vision_depth": config.vision.depth,
    }


def with_depth(config: ModelConfig, layers: int, vision_depth: int | None = None) -> ModelConfig:
    """The same model with a different number of decoder layers (and vision blocks)."""
    v = config.vision
    vd = vision_depth or v.depth
    vision = dataclasses.replace(
        v, depth=vd, fullatt_block_indexes=tuple(i for i in v.fullatt_block_indexes if i < vd)
    )
    return config.replace(text=dataclasses.replace(config.text, num_hidden_layers=layers), vision=vision)
