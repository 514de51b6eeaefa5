"""SFT training of one Lingshu stage, readable top to bottom (big_vision style).

    training program (train/program.py: model, optimizer, shardings, jitted step) -> parameters (init, an HF
    directory or the previous stage) -> data pipeline -> state (or the latest checkpoint)
    -> train/loop.py's loop over `SFTSteps` (step, log + eval, checkpoint; preemption) -> final export

`train_step(state, batch)` is pure: token-weighted gradient accumulation over the micro-batch axis,
optimizer update, and a NaN/inf guard that keeps the old state when the loss or a gradient is not finite.
"""

from __future__ import annotations

import functools
import logging
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lingshu_jax import sharding
from lingshu_jax.data.guard import DataInterrupted, next_batches
from lingshu_jax.model.config import ModelConfig
from lingshu_jax.train import flops as flops_lib
from lingshu_jax.train import loop
from lingshu_jax.train.program import (
    build_train_program,
    host_data_config,
    train_step,  # noqa: F401  (re-exported: the step lives in program.py)
    trainable_parts,
)
from lingshu_jax.train.step import token_losses

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------- steps
def eval_step(model, params, batch: dict) -> dict:
    """Loss sums and answer exact match: a sample is correct when every labelled token is the argmax
    (teacher-forced; equals greedy decoding of the answer). batch leaves [B, ...]."""
    nll, hit, valid = token_losses(model, params, batch)  # [B, S]; nll 0 where not labelled
    hit = hit | ~valid
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
def train(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs (or resumes) one stage; returns the last logged metrics. The loop itself (metrics, checkpoints,
    preemption, export) is `train/loop.py`'s, shared with GRPO; this module supplies the SFT step."""
    loop.start_run(config, workdir)
    if config.get("prepare_demo_data"):
        from lingshu_jax.demo import prepare_demo_data

        prepare_demo_data(config.prepare_demo_data)

    # ---- the training program (model, optimizer, shardings, jitted step: train/program.py) --------------
    program = build_train_program(config, sharding.make_mesh(config.mesh))
    ckpt = loop.make_checkpointer(config, workdir)
    resume = ckpt.latest_step() is not None
    params = None if resume else loop.initial_params(program, config.seed)  # resuming: the checkpoint's

    # ---- data and state (the latest complete checkpoint holds both) ---------------------------------------
    from lingshu_jax.processing import Processor

    assets = loop.assets_dir(config, program.init_path)
    processor = Processor.from_pretrained(assets)
    data_it = _data_iterator(config, program, processor)
    state = ckpt.restore(None, program.abstract_state(), data_it) if resume else program.init_state(params)
    start = int(state["step"])
    if start == 0 and config.train.get("checkpoint_initial"):
        ckpt.save(0, state, data_it)  # the exact starting point (e.g. to prove frozen weights stay frozen)

    # ---- loop and export --------------------------------------------------------------------------------
    sft = SFTSteps(config, program, processor, data_it, ckpt, workdir)
    preempt = loop.Preemption()
    if hasattr(data_it, "stop_when"):  # a signal also ends a wait for data (DataInterrupted in SFTSteps.step)
        data_it.stop_when(lambda: preempt.requested)
    with sharding.mesh_context(program.mesh, program.rules):
        result = loop.run_loop(
            config, workdir, ckpt, state, start, sft.step, sft.log, sft.save, preempt=preempt
        )
    if result.completed:
        loop.finish(config, workdir, program.model_config, result.state["params"], assets)
    return result.last


def _data_iterator(config, program, processor):
    from lingshu_jax.data.pipeline import make_pipeline

    return make_pipeline(
        host_data_config(config.data, jax.process_count()),  # this host's share of the global batch
        processor.tokenizer,
        processor,
        program.model_config,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
        seed=config.seed,
    )


class SFTSteps:
    """What `loop.run_loop` calls for SFT: one step (micro-batches from the pipeline through the program's
    jitted step), one metrics row (rates over the window, eval), one checkpoint (state + data position)."""

    def __init__(self, config, program, processor, data_it, ckpt, workdir: str):
        self.config, self.program, self.processor = config, program, processor
        self.data_it, self.ckpt, self.workdir = data_it, ckpt, workdir
        self.eval_fn = jax.jit(functools.partial(eval_step, program.model))
        self.peak = _peak_flops(config)
        self.trainable = trainable_parts(program.opt_info)
        self.params = None  # the latest step's parameters (the eval of a log row reads them)

    def step(self, state: dict, step: int):
        p = self.program
        try:
            micro = next_batches(self.data_it, p.grad_accum)
        except DataInterrupted as e:  # signalled while waiting for data: the loop saves step - 1 and stops
            raise loop.StopRequested() from e
        if micro is None:
            return None
        batch = _stack(micro)
        t0 = time.perf_counter()
        state, m = p.step(state, sharding.global_batch(batch, p.mesh, p.rules, micro_axis=True))
        loss = float(m["loss"])  # blocks: step time includes the device work
        row = {
            "loss": loss,
            "grad_norm": float(m["grad_norm"]),
            "time": time.perf_counter() - t0,
            "tokens": float(np.count_nonzero(batch["segment_ids"])),
            "loss_tokens": float(m["tokens"]),
            "flops": _step_flops(p.model_config, micro, self.trainable),
        }
        if not bool(m["finite"]):
            log.warning("step %d: non-finite loss or gradient; update skipped", step)
            if int(state["bad_steps"]) >= self.config.train.max_bad_steps:
                raise FloatingPointError(
                    f"{self.config.train.max_bad_steps} consecutive steps with a non-finite "
                    "loss or gradient (config.train.max_bad_steps); stopping"
                )
        self.params = state["params"]
        return state, row

    def log(self, step: int, rows: list[dict]) -> dict:
        c = self.config
        metrics = _log_row(step, rows, self.program.opt_info, self.data_it, jax.device_count(), self.peak)
        e = c.get("eval")
        if e and e.get("every") and (step % e.every == 0 or step == int(c.train.total_steps)):
            cfg = self.program.model_config
            if e.get("data"):
                metrics.update(evaluate_eval_set(self.eval_fn, self.params, c, self.processor, cfg))
            if e.get("benchmarks"):
                metrics.update(evaluate_benchmarks(self.params, c, self.processor, cfg, self.workdir, step))
        return metrics

    def save(self, step: int, state: dict, metrics: dict):
        self.ckpt.save(step, state, self.data_it, metrics=metrics)


# ----------------------------------------------------------------------------------------- parts
def _stack(micro: list[dict]) -> dict:
    keys = set(micro[0])
    for i, b in enumerate(micro[1:], 1):
        if set(b) != keys:
            raise ValueError(f"micro-batch {i} has keys {sorted(b)} but micro-batch 0 has {sorted(keys)}")
    return {k: np.stack([np.asarray(b[k]) for b in micro]) for k in sorted(keys)}


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


def _log_row(step, rows, opt_info, data_it, n_devices, peak) -> dict:
    """One metrics row: the last step's loss and grad norm, rates averaged over the steps since the last."""
    total = {k: sum(r[k] for r in rows) for k in ("time", "tokens", "loss_tokens", "flops")}
    row = {
        "loss": rows[-1]["loss"],
        "grad_norm": rows[-1]["grad_norm"],
        "step_time": total["time"] / max(len(rows), 1),
        "tokens_per_s": total["tokens"] / max(total["time"], 1e-9),
        "loss_tokens_per_step": total["loss_tokens"] / max(len(rows), 1),
    }
    for group, lr in opt_info.current_lrs(step - 1).items():
        row[f"lr/{group}"] = float(lr)
    if peak:
        row["mfu"] = flops_lib.mfu(total["flops"], total["time"], n_devices, peak)
    row["model_flops_per_s"] = total["flops"] / max(total["time"], 1e-9)
    for k, v in getattr(data_it, "counters", {}).items():
        if k.startswith(("skipped", "truncated", "dropped")):
            row[f"data/{k}"] = int(v)
    if hasattr(data_it, "packing_efficiency"):
        row["data/packing_efficiency"] = float(data_it.packing_efficiency)
    return row


def evaluate_eval_set(eval_fn, params, config, processor, model_cfg) -> dict:
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
