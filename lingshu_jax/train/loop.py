"""The training core shared by SFT (`train/trainer.py`) and GRPO (`rl/trainer.py`), top to bottom:

    start_run(config, workdir)          workdir, jax.distributed, train_config.json
    initial_params(program, seed)       init_from (HF dir / checkpoint / previous stage) or a seeded init
    assets_dir(config, init_path)       tokenizer / processor files
    make_checkpointer(config, workdir)  Orbax, latest complete step (resume)
    run_loop(...)                       steps start+1..total: metrics, progress bar, log rows, checkpoints,
                                        SIGTERM / SIGINT (checkpoint and stop after the current step)
    finish(...)                         workdir/final (the next stage's init_from), optional HF export

A trainer plugs in two functions: `step_fn(state, step) -> (state, row) | None` (one training step; None
when the data is exhausted) and `log_fn(step, rows) -> metrics` (one metrics row from the step rows since the
last one), plus `save_fn(step, state, metrics)` (what a checkpoint holds: the state and its data position).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

import jax
import ml_collections

from lingshu_jax import sharding
from lingshu_jax.model.vlm import init_params
from lingshu_jax.train.checkpoint import Checkpointer
from lingshu_jax.train.metrics import MetricsWriter

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Preemption:
    """SIGTERM / SIGINT request a checkpoint and a clean stop after the current step."""

    requested: bool = False
    previous: dict = dataclasses.field(default_factory=dict)

    def install(self) -> Preemption:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        log.warning("signal %d: saving a checkpoint and stopping after this step", signum)
        self.requested = True


class StopRequested(Exception):
    """A step function raises it when a stop was requested while it waited (e.g. for data, see
    `Preemption.requested`): the loop checkpoints the last completed step and stops."""


@dataclasses.dataclass
class LoopResult:
    state: Any
    last: dict  # the last metrics row written
    step: int  # the last step run
    completed: bool  # reached config.train.total_steps (not stopped by a signal or the end of the data)


# ------------------------------------------------------------------------------------------ set-up
def start_run(config: ml_collections.ConfigDict, workdir: str):
    """Creates the workdir, joins the processes (config.distributed), records the config."""
    os.makedirs(workdir, exist_ok=True)
    sharding.initialize_distributed(config.get("distributed"))
    if jax.process_index() == 0:  # multi-host: one writer
        with open(os.path.join(workdir, "train_config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))


def initial_params(program, seed: int):
    """Parameters placed with `program.param_shardings`: `program.init_path` (loaded), else init(seed)."""
    cfg, shard = program.model_config, program.param_shardings
    with sharding.mesh_context(program.mesh, program.rules):
        if program.init_path:
            from lingshu_jax.convert.load import load_any

            return load_any(program.init_path, dtype=cfg.param_dtype, shardings=shard)[1]
        return jax.jit(lambda r: init_params(cfg, r), out_shardings=shard)(jax.random.key(seed))


def assets_dir(config, init_path: str | None) -> str:
    """Tokenizer / processor files: config.assets_dir, else the init checkpoint's own."""
    if config.get("assets_dir"):
        return config.assets_dir
    if init_path:
        from lingshu_jax.convert.load import assets_dir_of

        return assets_dir_of(init_path)
    raise ValueError(
        "config.assets_dir: needed (tokenizer + preprocessor files) when config.init_from is empty"
    )


def make_checkpointer(config, workdir: str) -> Checkpointer:
    return Checkpointer(
        os.path.join(workdir, "checkpoints"),
        keep_last=config.train.keep_checkpoints,
        keep_best=config.train.get("keep_best", 0),
        best_metric=config.train.get("best_metric"),
    )


# ------------------------------------------------------------------------------------------ the loop
def run_loop(
    config,
    workdir: str,
    ckpt: Checkpointer,
    state,
    start: int,
    step_fn: Callable,
    log_fn: Callable,
    save_fn: Callable,
    plot: bool = True,
    preempt: Preemption | None = None,
) -> LoopResult:
    """Steps start+1 .. config.train.total_steps; a metrics row every `log_every` steps and at the end, a
    checkpoint every `checkpoint_every` steps, at the end and when a signal asks to stop. `preempt`: the
    caller's (e.g. to let a data wait see the request), else a new one."""
    total, t = int(config.train.total_steps), config.train
    writer = MetricsWriter(workdir, total, start_step=start, progress=t.get("progress", True))
    preempt = (preempt or Preemption()).install()
    last, rows, step, completed = {}, [], start, start >= total
    try:
        for step in range(start + 1, total + 1):
            try:
                out = step_fn(state, step)
            except StopRequested:  # signalled while waiting: save the last step unless already saved
                if step - 1 > start and (step - 1) % t.checkpoint_every:
                    save_fn(step - 1, state, {k: v for k, v in last.items() if isinstance(v, float)})
                ckpt.wait()
                log.warning("stopped after step %d on request (while waiting)", step - 1)
                step -= 1
                break
            if out is None:
                log.info("data exhausted after %d steps", step - 1)
                step -= 1
                break
            state, row = out
            writer.advance()
            rows.append(row)
            if step % t.log_every == 0 or step == total:
                last, rows = log_fn(step, rows), []
                writer.write(step, last)
            if step % t.checkpoint_every == 0 or step == total or preempt.requested:
                save_fn(step, state, {k: v for k, v in last.items() if isinstance(v, float)})
            if preempt.requested:
                ckpt.wait()
                log.warning("stopped at step %d on request; rerun the same command to resume", step)
                break
            completed = step == total
    finally:
        preempt.uninstall()
        ckpt.close()
        writer.close(plot=plot)
    return LoopResult(state, last, step, completed)


def finish(config, workdir: str, model_cfg, params, assets: str):
    """Final parameters as a checkpoint (`workdir/final`, the next stage's init_from); HF export if asked."""
    from lingshu_jax.convert.load import save_checkpoint

    final = os.path.join(workdir, "final")
    save_checkpoint(params, model_cfg, final, assets_from=assets)
    log.info("final parameters: %s", final)
    if config.get("export_hf"):
        from lingshu_jax.convert.jax_to_hf import jax_to_hf

        jax_to_hf(params, model_cfg, config.export_hf, source_hf_dir=assets)
        log.info("exported Hugging Face directory: %s", config.export_hf)
