"""The training program of one config: model, optimizer, shardings, the jitted step and its input specs.

One code path for the trainer (`train/trainer.py`, which runs it) and the AOT tool (`aot/`, which compiles it
for a TPU slice it does not have): what the AOT tool measures is what `scripts/train.py` runs.

    program = build_train_program(config, mesh, rules)
    program.step(state, batch)                     # jitted, state donated; batch leaves [K, ...] global
    program.step.lower(program.abstract_state(), program.abstract_batch()).compile()   # AOT, no memory

Batch semantics (the same on every topology): `config.data.batch_size` is the GLOBAL number of rows of one
micro-batch and `config.data.patch_budget` the global vision-patch budget of one micro-batch; each of the
`P` hosts loads `batch_size / P` rows and `patch_budget / P` patches (`host_data_config`). A step is
`config.train.grad_accum` micro-batches, so the global batch of a step is `batch_size * grad_accum` rows on
1 host x 8 chips and on 2 hosts x 4 chips alike.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lingshu_jax import sharding
from lingshu_jax.model.config import ModelConfig
from lingshu_jax.model.vlm import Qwen25VL, abstract_params
from lingshu_jax.train.accumulate import WEIGHT, accumulate_gradients
from lingshu_jax.train.optimizer import OptimizerInfo, make_optimizer, state_shardings
from lingshu_jax.train.step import loss_sums


def train_step(model, tx, state: dict, batch: dict, trainable=None) -> tuple[dict, dict]:
    """state {step, params, opt_state, bad_steps}; batch leaves [K micro-batches, ...] -> (state, metrics).

    Token-weighted gradient accumulation over the micro-batch axis, optimizer update, and a NaN/inf guard
    that keeps the old state when the loss or a gradient is not finite.
    `trainable`: bool tree like params; frozen leaves get no gradient computation at all."""
    loss, grads, sums = accumulate_gradients(
        functools.partial(_token_weighted_sums, model), state["params"], batch, trainable=trainable
    )
    grad_norm = optax.tree.norm(grads)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
    new_state = {
        "step": state["step"] + 1,
        "params": keep(params, state["params"]),
        "opt_state": keep(opt_state, state["opt_state"]),
        "bad_steps": jnp.where(ok, 0, state["bad_steps"] + 1),
    }
    return new_state, {"loss": loss, "grad_norm": grad_norm, "tokens": sums[WEIGHT], "finite": ok}


def _token_weighted_sums(model, params, micro_batch) -> tuple[jax.Array, dict]:
    """`loss_sums` in the accumulator's terms: (NLL sum [], {"weight": loss-token count []})."""
    total, tokens = loss_sums(model, params, micro_batch)
    return total, {WEIGHT: tokens}


@dataclasses.dataclass(frozen=True)
class TrainProgram:
    """Everything the step needs, built once from the config (no parameter memory allocated)."""

    config: ml_collections.ConfigDict
    mesh: jax.sharding.Mesh
    rules: tuple
    model: Qwen25VL
    model_config: ModelConfig
    init_path: str | None  # config.init_from (HF dir / checkpoint / previous stage) or None
    tx: optax.GradientTransformation
    opt_info: OptimizerInfo
    param_shardings: Any  # tree like params of NamedSharding
    opt_shardings: Any  # tree like tx.init(params)
    state_shardings: dict  # {step, params, opt_state, bad_steps}
    grad_accum: int
    step: Any  # jax.jit(train_step) with in/out shardings and the state donated

    @property
    def replicated(self) -> jax.sharding.NamedSharding:
        return jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())

    def abstract_params(self) -> Any:
        """Parameters as ShapeDtypeStructs carrying their shardings."""
        return _with_shardings(abstract_params(self.model_config), self.param_shardings)

    def abstract_state(self) -> dict:
        """The train state as ShapeDtypeStructs carrying their shardings (a restore target, an AOT input)."""
        params = abstract_params(self.model_config)
        state = {
            "step": jax.ShapeDtypeStruct((), jnp.int32),
            "params": params,
            "opt_state": jax.eval_shape(self.tx.init, params),
            "bad_steps": jax.ShapeDtypeStruct((), jnp.int32),
        }
        return _with_shardings(state, self.state_shardings)

    def abstract_batch(self) -> dict:
        """The global batch of one step as the data pipeline delivers it through `sharding.global_batch`:
        ShapeDtypeStructs [K, ...] with their NamedShardings (see `batch_spec`)."""
        shapes = batch_spec(self.config.data, self.model_config, self.grad_accum)
        shard = sharding.batch_shardings(shapes, self.mesh, self.rules, micro_axis=True)
        return {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=shard[k]) for k, v in shapes.items()}

    def lower(self) -> jax.stages.Lowered:
        """The step lowered on abstract inputs (no memory); `.compile()` it for memory / cost analysis."""
        with sharding.mesh_context(self.mesh, self.rules):
            return self.step.lower(self.abstract_state(), self.abstract_batch())

    def init_state(self, params) -> dict:
        """A fresh state around `params` (already placed with `param_shardings`), optimizer zeros sharded."""
        with sharding.mesh_context(self.mesh, self.rules):
            opt_state = jax.jit(self.tx.init, out_shardings=self.opt_shardings)(params)
        state = {
            "step": jnp.zeros((), jnp.int32),
            "params": params,
            "opt_state": opt_state,
            "bad_steps": jnp.zeros((), jnp.int32),
        }
        return jax.device_put(state, self.state_shardings)


def build_train_program(config: ml_collections.ConfigDict, mesh, rules=None) -> TrainProgram:
    """The training program of `config` on `mesh` (real devices or compile-only TPU devices).

    Reads config.model / config.init_from (only the model's config.json, never weights), config.optim,
    config.data (batch shapes), config.train.grad_accum, config.sharding_rules (when `rules` is None)."""
    rules = sharding.rules_from_config(config.get("sharding_rules")) if rules is None else rules
    model_cfg, init_path = model_config_of(config)
    model = Qwen25VL(model_cfg)
    check_vision_chunks(config.data, model_cfg, mesh, rules)
    p_shard = sharding.param_shardings(abstract_params(model_cfg, boxed=True), mesh, rules)
    params = abstract_params(model_cfg)
    tx, opt_info = make_optimizer(config.optim, params)
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    opt_shard = state_shardings(tx, params, p_shard, replicated)  # moments sharded like their parameters
    state_shard = {"step": replicated, "params": p_shard, "bad_steps": replicated, "opt_state": opt_shard}
    step = jax.jit(
        functools.partial(train_step, model, tx, trainable=opt_info.trainable_mask),
        in_shardings=(state_shard, None),  # the batch arrives as global arrays with their own shardings
        out_shardings=(state_shard, None),
        donate_argnums=(0,),
    )
    return TrainProgram(
        config=config,
        mesh=mesh,
        rules=rules,
        model=model,
        model_config=model_cfg,
        init_path=init_path,
        tx=tx,
        opt_info=opt_info,
        param_shardings=p_shard,
        opt_shardings=opt_shard,
        state_shardings=state_shard,
        grad_accum=int(config.train.get("grad_accum", 1)),
        step=step,
    )


def model_config_of(config) -> tuple[ModelConfig, str | None]:
    """(ModelConfig, init path or None): config.model, or the init checkpoint's config.json with
    config.model's compute policy (dtypes, attention, span, remat) applied."""
    policy = {
        k: config.model[k]
        for k in (
            "dtype",
            "param_dtype",
            "vision_dtype",
            "attention_impl",
            "vision_attention_span",
            "vision_attention_chunks",
            "remat_policy",
            "vision_remat_policy",
            "loss_chunk_len",
            "unroll_layers",
            "vision_unroll_layers",
        )
        if k in config.model
    }
    init = config.get("init_from")
    if not init:
        return ModelConfig.from_config_dict(config.model), None
    from lingshu_jax.convert.load import model_config_from

    return model_config_from(init, **policy), init


def trainable_parts(opt_info: OptimizerInfo) -> tuple[str, ...]:
    """The model parts ('vision', 'merger', 'text') with a trainable parameter (for FLOP counts)."""
    from lingshu_jax.train.flops import PARTS

    parts = set()
    for path, group in opt_info.group_of.items():
        if group in opt_info.frozen_groups:
            continue
        parts.add(
            "merger"
            if path.startswith("visual/merger")
            else "vision"
            if path.startswith("visual")
            else "text"
        )
    return tuple(p for p in PARTS if p in parts)


# ------------------------------------------------------------------------------------------ batches
def host_data_config(data_cfg, process_count: int) -> dict:
    """This host's share of `data_cfg` (global batch_size / patch_budget per micro-batch) as a dict for
    `make_pipeline`; ValueError (naming the key) when a share is not whole."""
    d = data_cfg.to_dict() if hasattr(data_cfg, "to_dict") else dict(data_cfg)
    rows, patches = int(d.get("batch_size", 1)), int(d.get("patch_budget", 16384))
    if rows % process_count:
        raise ValueError(
            f"data.batch_size={rows} (global rows per micro-batch) does not divide over {process_count} hosts"
        )
    if patches % (4 * process_count):
        raise ValueError(
            f"data.patch_budget={patches} (global patches per micro-batch) does not divide into "
            f"{process_count} host shares that are multiples of 4"
        )
    chunks = int(d.get("vision_chunks", 1))
    if chunks > 1 and chunks % process_count:
        raise ValueError(f"data.vision_chunks={chunks} does not divide over {process_count} hosts")
    share = {"batch_size": rows // process_count, "patch_budget": patches // process_count}
    if chunks > 1:
        share["vision_chunks"] = chunks // process_count
    return {**d, **share}


def check_vision_chunks(data_cfg, model_cfg: ModelConfig, mesh, rules) -> None:
    """attention_impl="splash" attends within each device's shard of the vision stream, and
    `model.vision_attention_chunks` within that many chunks of it: the data must lay out whole images in
    chunks that divide them (`data.vision_chunks`). ValueError naming the value to set."""
    budget = int(data_cfg.get("patch_budget", 0))
    chunks = int(data_cfg.get("vision_chunks", 1))
    model = model_cfg.vision_attention_chunks
    if budget and chunks % model:
        raise ValueError(
            f"model.vision_attention_chunks={model}: the full-attention vision layers attend within {model} "
            f"chunks of the stream; set data.vision_chunks to a multiple of it (got {chunks}) so that no "
            "image crosses a chunk"
        )
    if model_cfg.attention_impl != "splash" or not budget:
        return
    shards = sharding.logical_shards(mesh, rules, "vis_tokens")
    if chunks != shards:
        raise ValueError(
            f"attention_impl='splash' attends within each of the vision stream's {shards} device shards: "
            f"set data.vision_chunks={shards} (got {chunks}) so that no image crosses a shard"
        )


def batch_spec(data_cfg, model_cfg: ModelConfig, grad_accum: int) -> dict[str, jax.ShapeDtypeStruct]:
    """Global shapes/dtypes of one step's batch [K=grad_accum, ...] as `data/packing.py` builds it (all
    hosts' shares concatenated): rows [K, B, S]; with patch_budget N > 0 the vision stream [K, N, ...];
    with uint8 pixels the per-column normalisation [K, patch_dim]."""
    g = lambda k, default: data_cfg.get(k, default) if hasattr(data_cfg, "get") else default
    rows = model_batch_spec(
        model_cfg,
        int(g("batch_size", 1)),
        int(g("seq_len", 8192)),
        int(g("patch_budget", 16384)),
        np.dtype(g("pixel_dtype", "uint8")),
        labels=True,
    )
    k = int(grad_accum)
    return {name: jax.ShapeDtypeStruct((k, *x.shape), x.dtype) for name, x in rows.items()}


def model_batch_spec(
    model_cfg: ModelConfig, rows: int, seq: int, patches: int, pixel_dtype=np.uint8, labels: bool = False
) -> dict[str, jax.ShapeDtypeStruct]:
    """Global shapes/dtypes of one model batch (`vlm.prepare_inputs`' keys): input_ids / segment_ids
    [rows, seq], position_ids [3, rows, seq] (+ labels / loss_mask); with `patches` > 0 the vision stream
    [patches, ...] and vision_token_index [rows, seq] (+ pixel_scale / pixel_offset [patch_dim] for uint8
    pixels)."""
    b, s, n, i32 = int(rows), int(seq), int(patches), np.int32
    spec = {
        "input_ids": ((b, s), i32),
        "segment_ids": ((b, s), i32),
        "position_ids": ((3, b, s), i32),
    }
    if labels:
        spec.update({"labels": ((b, s), i32), "loss_mask": ((b, s), np.float32)})
    if n:
        dim = model_cfg.vision.patch_dim
        spec.update(
            {
                "pixel_values": ((n, dim), np.dtype(pixel_dtype)),
                "vision_pos": ((n, 2), i32),
                "window_segments": ((n,), i32),
                "frame_segments": ((n,), i32),
                "vision_token_index": ((b, s), i32),
            }
        )
        if np.dtype(pixel_dtype) == np.uint8:
            spec.update({"pixel_scale": ((dim,), np.float32), "pixel_offset": ((dim,), np.float32)})
    return {name: jax.ShapeDtypeStruct(shape, dtype) for name, (shape, dtype) in spec.items()}


def _with_shardings(tree, shardings):
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)
