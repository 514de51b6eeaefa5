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

from lingshu_jax import sharding
from lingshu_jax.data.guard import DataInterrupted, next_batches  # data (issue 15)
from lingshu_jax.model.config import ModelConfig
from lingshu_jax.model.vlm import init_params
from lingshu_jax.train import flops as flops_lib
from lingshu_jax.train.checkpoint import Checkpointer
from lingshu_jax.train.metrics import MetricsWriter
from lingshu_jax.train.program import (
    build_train_program,
    host_data_config,
    model_config_of,
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

    # ---- mesh and the training program (model, optimizer, shardings, jitted step: train/program.py) ------
    mesh = sharding.make_mesh(config.mesh)
    program = build_train_program(config, mesh)
    rules, model_cfg, init_path = program.rules, program.model_config, program.init_path
    p_shard = program.param_shardings

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
            params = None  # the checkpoint supplies the whole state
        elif init_path:
            from lingshu_jax.convert.load import load_any

            _, params, _ = load_any(init_path, dtype=model_cfg.param_dtype, shardings=p_shard)
        else:
            params = jax.jit(lambda r: init_params(model_cfg, r), out_shardings=p_shard)(
                jax.random.key(config.seed)
            )
    opt_info = program.opt_info

    # ---- data -----------------------------------------------------------------------------------
    from lingshu_jax.data.pipeline import make_pipeline
    from lingshu_jax.processing import Processor

    assets = _assets_dir(config, init_path)
    processor = Processor.from_pretrained(assets)
    data_it = make_pipeline(
        host_data_config(config.data, jax.process_count()),  # this host's share of the global batch
        processor.tokenizer,
        processor,
        model_cfg,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
        seed=config.seed,
    )

    # ---- state, or resume from the latest complete checkpoint --------------------------------------
    if resume:
        state = ckpt.restore(None, program.abstract_state(), data_it)
    else:
        state = program.init_state(params)
    start = int(state["step"])
    if start == 0 and config.train.get("checkpoint_initial"):
        ckpt.save(0, state, data_it)  # the exact starting point (e.g. to prove frozen weights stay frozen)
    total = int(config.train.total_steps)
    accum = int(config.train.get("grad_accum", 1))

    # ---- compiled steps -------------------------------------------------------------------------
    step_fn = program.step
    eval_fn = jax.jit(functools.partial(eval_step, program.model))
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
_model_config = model_config_of  # (the RL trainer's name for it)


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


_trainable_parts = trainable_parts


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
