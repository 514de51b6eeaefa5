"""The training loop of one Lingshu stage, readable top to bottom (big_vision style).

    mesh -> model + parameters (init, an HF directory or the previous stage) -> optimizer groups
    -> data pipeline -> checkpoint (resume) -> jitted train step -> loop (log, eval, checkpoint)
    -> final export

`train_step(state, batch)` is pure: token-weighted gradient accumulation over the micro-batch axis,
optimizer update, and a NaN/inf guard that keeps the old state when the loss or a gradient is not finite.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lingshu_jax import sharding
from lingshu_jax.data.guard import DataInterrupted, next_batches  # data (issue 15)
from lingshu_jax.model.config import ModelConfig
from lingshu_jax.model.vlm import Qwen25VL, abstract_params, init_params
from lingshu_jax.train import flops as flops_lib
from lingshu_jax.train.accumulate import accumulate_gradients
from lingshu_jax.train.checkpoint import Checkpointer
from lingshu_jax.train.loss import masked_token_nll, next_token_targets
from lingshu_jax.train.metrics import MetricsWriter
from lingshu_jax.train.optimizer import make_optimizer, state_shardings
from lingshu_jax.train.step import loss_sums

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------- steps
def train_step(model, tx, state: dict, batch: dict, trainable=None) -> tuple[dict, dict]:
    """state {step, params, opt_state, bad_steps}; batch leaves [K micro-batches, ...] -> (state, metrics).

    `trainable`: bool tree like params; frozen leaves get no gradient computation at all."""
    loss, grads, n_tokens = accumulate_gradients(
        lambda p, b: loss_sums(model, p, b), state["params"], batch, trainable=trainable
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
    return new_state, {"loss": loss, "grad_norm": grad_norm, "tokens": n_tokens, "finite": ok}


def eval_step(model, params, batch: dict) -> dict:
    """Loss sums and answer exact match: a sample is correct when every labelled token is the argmax
    (teacher-forced; equals greedy decoding of the answer). batch leaves [B, ...]."""
    logits, _ = model.apply({"params": params}, batch)
    targets = next_token_targets(batch["labels"], batch["segment_ids"])
    nll, valid = masked_token_nll(logits, targets)  # [B, S], 0 where not labelled
    hit = (jnp.argmax(logits, -1) == targets) | ~valid
    seg = batch["segment_ids"]
    k = jnp.arange(1, seg.shape[1] + 1)  # at most S segments per row
    in_seg = (seg[..., None] == k) & valid[..., None]  # [B, S, K]
    has = in_seg.any(1)
    correct = jnp.all(hit[..., None] | ~in_seg, axis=1) & has
    return {
        "loss_sum": jnp.sum(nll),
        "tokens": valid.sum(),
        "correct": correct.sum(),
        "samples": has.sum(),
    }


# ------------------------------------------------------------------------------------- the loop
@dataclasses.dataclass
class _Preemption:
    """SIGTERM / SIGINT request a checkpoint and a clean stop after the current step."""

    requested: bool = False
    previous: dict = dataclasses.field(default_factory=dict)

    def install(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        log.warning("signal %d: saving a checkpoint and stopping after this step", signum)
        self.requested = True


def train(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs (or resumes) one stage; returns the last logged metrics."""
    os.makedirs(workdir, exist_ok=True)
    sharding.initialize_distributed(config.get("distributed"))
    if config.get("prepare_demo_data"):
        from lingshu_jax.demo import prepare_demo_data

        prepare_demo_data(config.prepare_demo_data)
    _write_config(config, workdir)

    # ---- mesh and model -----------------------------------------------------------------------
    mesh = sharding.make_mesh(config.mesh)
    rules = sharding.rules_from_config(config.get("sharding_rules"))
    model_cfg, init_path = _model_config(config)
    model = Qwen25VL(model_cfg)
    p_shard = sharding.param_shardings(abstract_params(model_cfg, boxed=True), mesh, rules)

    # ---- parameters (abstract when resuming: the checkpoint supplies them) -------------------------
    ckpt = Checkpointer(
        os.path.join(workdir, "checkpoints"),
        keep_last=config.train.keep_checkpoints,
        keep_best=config.train.get("keep_best", 0),
        best_metric=config.train.get("best_metric"),
    )
    resume = ckpt.latest_step() is not None
    with sharding.mesh_context(mesh, rules):
        if resume:
            params = jax.tree.map(
                lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                abstract_params(model_cfg),
                p_shard,
            )
        elif init_path:
            from lingshu_jax.convert.load import load_any

            _, params, _ = load_any(init_path, dtype=model_cfg.param_dtype, shardings=p_shard)
        else:
            params = jax.jit(lambda r: init_params(model_cfg, r), out_shardings=p_shard)(
                jax.random.key(config.seed)
            )
    tx, opt_info = make_optimizer(config.optim, params)

    # ---- data -----------------------------------------------------------------------------------
    from lingshu_jax.data.pipeline import make_pipeline
    from lingshu_jax.processing import Processor

    assets = _assets_dir(config, init_path)
    processor = Processor.from_pretrained(assets)
    data_it = make_pipeline(
        config.data,
        processor.tokenizer,
        processor,
        model_cfg,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
        seed=config.seed,
    )

    # ---- state, or resume from the latest complete checkpoint --------------------------------------
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    opt_shard = state_shardings(tx, params, p_shard, replicated)  # moments sharded like their parameters
    with sharding.mesh_context(mesh, rules):
        init_opt = jax.jit(tx.init, out_shardings=opt_shard)
        opt_state = jax.eval_shape(tx.init, params) if resume else init_opt(params)
    state = {
        "step": jnp.zeros((), jnp.int32),
        "params": params,
        "opt_state": opt_state,
        "bad_steps": jnp.zeros((), jnp.int32),
    }
    state_shard = {"step": replicated, "params": p_shard, "bad_steps": replicated, "opt_state": opt_shard}
    if resume:
        abstract = jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, state_shard
        )
        state = ckpt.restore(None, abstract, data_it)
    else:
        state = jax.device_put(state, state_shard)
    start = int(state["step"])
    if start == 0 and config.train.get("checkpoint_initial"):
        ckpt.save(0, state, data_it)  # the exact starting point (e.g. to prove frozen weights stay frozen)
    total = int(config.train.total_steps)
    accum = int(config.train.get("grad_accum", 1))

    # ---- compiled steps -------------------------------------------------------------------------
    step_fn = jax.jit(
        functools.partial(train_step, model, tx, trainable=opt_info.trainable_mask),
        in_shardings=(state_shard, None),
        out_shardings=(state_shard, None),
        donate_argnums=(0,),
    )
    eval_fn = jax.jit(functools.partial(eval_step, model))
    peak = _peak_flops(config)
    trainable = _trainable_parts(opt_info)
    writer = MetricsWriter(workdir, total, start_step=start, progress=config.train.get("progress", True))
    preempt = _Preemption().install()
    if hasattr(data_it, "stop_when"):  # data (issue 15): a signal ends a wait for data (DataInterrupted)
        data_it.stop_when(lambda: preempt.requested)
    last: dict[str, Any] = {}
    window = _new_window()

    # ---- loop -----------------------------------------------------------------------------------
    with sharding.mesh_context(mesh, rules):
        for step in range(start + 1, total + 1):
            try:
                micro = next_batches(data_it, accum)
            except DataInterrupted:  # data (issue 15): signalled while waiting; save the last step if new
                if step - 1 > start and (step - 1) % config.train.checkpoint_every:
                    ckpt.save(step - 1, state, data_it)
                ckpt.wait()
                log.warning("stopped at step %d on request while waiting for data", step - 1)
                break
            if micro is None:
                log.info("data exhausted after %d steps", step - 1)
                break
            batch = _stack(micro)
            t0 = time.perf_counter()
            state, m = step_fn(state, sharding.global_batch(batch, mesh, rules, micro_axis=True))
            loss = float(m["loss"])  # blocks: step time includes the device work
            dt = time.perf_counter() - t0
            writer.advance()
            window["tokens"] += float(np.count_nonzero(batch["segment_ids"]))
            window["loss_tokens"] += float(m["tokens"])
            window["time"] += dt
            window["steps"] += 1
            window["flops"] += _step_flops(model_cfg, micro, trainable)
            if not bool(m["finite"]):
                log.warning("step %d: non-finite loss or gradient; update skipped", step)
                if int(state["bad_steps"]) >= config.train.max_bad_steps:
                    raise FloatingPointError(
                        f"{config.train.max_bad_steps} consecutive steps with a non-finite "
                        "loss or gradient (config.train.max_bad_steps); stopping"
                    )
            if step % config.train.log_every == 0 or step == total:
                last = _log_row(step, loss, m, opt_info, window, data_it, jax.device_count(), peak)
                window = _new_window()
                metrics = dict(last)
                if (
                    config.get("eval")
                    and config.eval.get("every")
                    and (step % config.eval.every == 0 or step == total)
                ):
                    if config.eval.get("data"):
                        metrics.update(evaluate(eval_fn, state["params"], config, processor, model_cfg))
                    if config.eval.get("benchmarks"):
                        metrics.update(
                            evaluate_benchmarks(state["params"], config, processor, model_cfg, workdir, step)
                        )
                    last = metrics
                writer.write(step, metrics)
            if step % config.train.checkpoint_every == 0 or step == total or preempt.requested:
                ckpt.save(
                    step, state, data_it, metrics={k: v for k, v in last.items() if isinstance(v, float)}
                )
            if preempt.requested:
                ckpt.wait()
                log.warning("stopped at step %d on request; rerun the same command to resume", step)
                break
    preempt.uninstall()
    ckpt.close()
    writer.close()
    if not preempt.requested and int(state["step"]) >= total:
        _finish(config, workdir, model_cfg, state["params"], assets)
    return last


# ----------------------------------------------------------------------------------------- parts
def _model_config(config) -> tuple[ModelConfig, str | None]:
    policy = {
        k: config.model[k]
        for k in (
            "dtype",
            "param_dtype",
            "vision_dtype",
            "attention_impl",
            "vision_attention_span",
            "remat_policy",
            "vision_remat_policy",
        )
        if k in config.model
    }
    init = config.get("init_from")
    if not init:
        return ModelConfig.from_config_dict(config.model), None
    from lingshu_jax.convert.load import model_config_from

    return model_config_from(init, **policy), init


def _assets_dir(config, init_path: str | None) -> str:
    """Tokenizer / processor files: config.assets_dir, else the init checkpoint's own."""
    if config.get("assets_dir"):
        return config.assets_dir
    if init_path:
        from lingshu_jax.convert.load import assets_dir_of

        return assets_dir_of(init_path)
    raise ValueError(
        "config.assets_dir: needed (tokenizer + preprocessor files) when config.init_from is empty"
    )


def _stack(micro: list[dict]) -> dict:
    keys = set(micro[0])
    for i, b in enumerate(micro[1:], 1):
        if set(b) != keys:
            raise ValueError(f"micro-batch {i} has keys {sorted(b)} but micro-batch 0 has {sorted(keys)}")
    return {k: np.stack([np.asarray(b[k]) for b in micro]) for k in sorted(keys)}


def _trainable_parts(opt_info) -> tuple[str, ...]:
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
    return tuple(p for p in flops_lib.PARTS if p in parts)


def _step_flops(cfg: ModelConfig, micro: list[dict], trainable) -> float:
    total = 0.0
    for b in micro:
        seg = np.asarray(b["segment_ids"])
        rows = [np.bincount(r[r > 0]).tolist()[1:] for r in seg]
        grids = _grids_of(b, cfg)
        total += flops_lib.train_flops_per_step(cfg, [[s for s in r if s] for r in rows], grids, trainable)
    return total


def _grids_of(b: dict, cfg: ModelConfig) -> list:
    grids = b.get("vision_grids")
    if grids is None:
        return []
    return [tuple(int(x) for x in g) for g in np.asarray(grids).reshape(-1, 3) if g[0] > 0]


def _peak_flops(config) -> float | None:
    """Per-device peak FLOP/s for MFU: the config's, the vendor figure, or (CPU) a measured matmul rate."""
    if config.train.get("peak_flops_per_device"):
        return float(config.train.peak_flops_per_device)
    device = jax.devices()[0]
    if device.platform == "cpu":
        return flops_lib.measured_peak_flops() / max(jax.local_device_count(), 1)
    return flops_lib.peak_flops_per_device(device.device_kind)


def _new_window() -> dict:
    return {"tokens": 0.0, "loss_tokens": 0.0, "time": 0.0, "flops": 0.0, "steps": 0}


def _log_row(step, loss, m, opt_info, window, data_it, n_devices, peak) -> dict:
    """One metrics row; rates are averages over the steps since the last row."""
    row = {
        "loss": loss,
        "grad_norm": float(m["grad_norm"]),
        "step_time": window["time"] / max(window["steps"], 1),
        "tokens_per_s": window["tokens"] / max(window["time"], 1e-9),
        "loss_tokens_per_step": window["loss_tokens"] / max(window["steps"], 1),
    }
    for group, lr in opt_info.current_lrs(step - 1).items():
        row[f"lr/{group}"] = float(lr)
    if peak:
        row["mfu"] = flops_lib.mfu(window["flops"], window["time"], n_devices, peak)
    row["model_flops_per_s"] = window["flops"] / max(window["time"], 1e-9)
    for k, v in getattr(data_it, "counters", {}).items():
        if k.startswith(("skipped", "truncated", "dropped")):
            row[f"data/{k}"] = int(v)
    if hasattr(data_it, "packing_efficiency"):
        row["data/packing_efficiency"] = float(data_it.packing_efficiency)
    return row


def evaluate(eval_fn, params, config, processor, model_cfg) -> dict:
    """Loss and answer exact-match accuracy on the configured eval set (first `max_batches` batches)."""
    from lingshu_jax.data.pipeline import make_pipeline

    it = make_pipeline(config.eval.data, processor.tokenizer, processor, model_cfg, seed=0)
    sums = {"loss_sum": 0.0, "tokens": 0.0, "correct": 0.0, "samples": 0.0}
    for i, batch in enumerate(it):
        if i >= config.eval.get("max_batches", 10**9):
            break
        out = eval_fn(params, batch)
        for k in sums:
            sums[k] += float(out[k])
    if hasattr(it, "close"):
        it.close()
    return {
        "eval/loss": sums["loss_sum"] / max(sums["tokens"], 1),
        "eval/accuracy": sums["correct"] / max(sums["samples"], 1),
        "eval/samples": int(sums["samples"]),
    }


def evaluate_benchmarks(params, config, processor, model_cfg, workdir: str, step: int) -> dict:
    """MedEvalKit-equivalent benchmarks (config.eval.benchmarks) with greedy generation from the current
    parameters; results under workdir/evals/step_N, headline accuracies in the metrics row."""
    from lingshu_jax.evals.runner import evaluate as run_benchmarks
    from lingshu_jax.infer.eval_adapter import make_generate_fn
    from lingshu_jax.infer.generator import Generator

    e = config.eval
    gen = Generator(model_cfg, params, processor)
    generate_fn = make_generate_fn(
        gen, max_new_tokens=e.get("max_new_tokens", 64), batch_size=e.get("batch_size", 8)
    )
    out = os.path.join(workdir, "evals", f"step_{step}")
    results = run_benchmarks(
        generate_fn, list(e.benchmarks), e.benchmark_dir, out, limit=e.get("limit"), progress=False
    )
    row = {}
    for name, m in results.items():
        total = m.get("total") if isinstance(m, dict) else None
        if isinstance(total, dict) and "acc" in total:
            row[f"bench/{name}/acc"] = float(total["acc"])
    return row


def _write_config(config, workdir: str):
    with open(os.path.join(workdir, "train_config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))


def _finish(config, workdir, model_cfg, params, assets):
    """Final parameters as our checkpoint (`workdir/final`, the next stage's init_from), optional HF export."""
    from lingshu_jax.convert.load import save_checkpoint

    final = os.path.join(workdir, "final")
    save_checkpoint(params, model_cfg, final, assets_from=assets)
    log.info("final parameters: %s", final)
    if config.get("export_hf"):
        from lingshu_jax.convert.jax_to_hf import jax_to_hf

        jax_to_hf(params, model_cfg, config.export_hf, source_hf_dir=assets)
        log.info("exported Hugging Face directory: %s", config.export_hf)
