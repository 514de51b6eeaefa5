"""GRPO training (Lingshu stage 4, RLVR): the GRPO step plugged into the training core `train/loop.py`
(checkpoint/resume, preemption, metrics, export), which the SFT trainer shares; the program (model,
optimizer, shardings) is `train/program.py`'s.

    mesh -> policy parameters (init_from: the stage-3 model) + a frozen reference copy -> optimizer
    -> prompts -> checkpoint (resume) -> loop over rollout steps:
         the step's prompts -> G samples each (infer.generate on the policy's mesh, temperature 1.0)
         -> rewards (registry, weighted) -> group advantages
         -> old log-probs (the policy that sampled, once per rollout) and reference log-probs (k3 KL)
         -> `epochs` passes over the rollout in mini-batches: one optimizer update per mini-batch,
            gradients accumulated over micro-batches, token-level clipped surrogate (`rl.loss.grpo_loss`)
         -> metrics, checkpoint

A trainer *step* is one rollout batch (`rl.rollout_prompts` prompts x `rl.group_size` samples); it makes
`rollout_prompts / mini_batch_prompts * epochs` optimizer updates (Lingshu: 512 / 128 * 1 = 4).

Device steps are pure and jitted. Gradients accumulate in `train/accumulate.py`'s accumulator, the one
SFT uses: its `add` (one micro-batch's gradient and metric sums) is the accumulate program, called from a
host loop once per micro-batch (micro-batches are built from the rollout on the host, their number varies,
and a Lingshu mini-batch is 2048 rows), and `update_step(state, acc)` makes the optimizer update from its
`finish`, with the loss aggregated over the whole mini-batch at once, exactly as without accumulation,
skipping an update whose loss or gradient is not finite (the SFT trainer's guard). As in SFT, gradients are
taken for trainable parameters only (`OptimizerInfo.trainable_mask`); a frozen leaf gets a zero gradient.

Resume: the checkpoint holds params, optimizer state, step, the base RNG key and the data position; the
prompts and the sampling key of step s are functions of (seed, s), so a resumed run repeats exactly the
rollouts an uninterrupted run would have made.

Multi-host (H processes, `jax.distributed`): process h takes whole prompt groups, the h-th of H equal
blocks of the step's prompts, so group advantages are host-local. It samples its block (each sample with
its own key from (seed, step, prompt index in the step, sample index): the same tokens whichever host
draws it), scores it, and feeds its rows into global arrays sharded over the mesh
(`sharding.global_batch`); shapes that must match across hosts (prompt / response length, patch budget)
are the largest of any host's. The mini-batches are a permutation of the global rows seeded by
(seed, step, epoch), the same for any H: each host sends the rows of a mini-batch it holds, padded with
empty rows to a common count. Loss and gradients are sums over the global arrays, rewards and lengths
are gathered before averaging, so the metrics are global: H hosts log what one host would (to float
rounding; `tests/rl/test_multihost.py`).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import logging
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lingshu_jax import sharding
from lingshu_jax.infer.generate import batch_shards, generation_rules, stream_chunks
from lingshu_jax.infer.sampling import SamplingConfig
from lingshu_jax.model.vlm import Qwen25VL
from lingshu_jax.rl.data import PromptSchedule, load_prompts, prepare_easy_vqa_prompts
from lingshu_jax.rl.loss import LOSS_AGG_MODES, grpo_loss, masked_mean, token_entropy, token_log_probs
from lingshu_jax.rl.rewards import combine_rewards
from lingshu_jax.rl.rollout import (
    Rollout,
    check_vision_spans,
    encode_prompt,
    filter_overlong,
    rl_processor,
    sample_responses,
)
from lingshu_jax.train import accumulate, loop
from lingshu_jax.train.checkpoint import Checkpointer
from lingshu_jax.train.metrics import plot_curves, truncate_after
from lingshu_jax.train.program import build_train_program

log = logging.getLogger(__name__)

CURVE_KEYS = (
    "reward",
    "reward/accuracy",
    "reward/format",
    "kl",
    "clip_fraction",
    "entropy",
    "response_length",
    "rollout_tokens_per_s",
)
_TOKEN_METRICS = ("kl", "clip_fraction", "ratio_mean", "ppo_kl", "entropy")
_SUM_KEYS = ("tokens", "pg_loss", *_TOKEN_METRICS)  # besides the accumulator's "loss" and "weight"
_UPDATE_ONLY = ("old_logp", "ref_logp", "advantages")  # batch arrays the log-prob passes do not read


# ------------------------------------------------------------------------------------------- settings
@dataclasses.dataclass(frozen=True)
class GRPOSettings:
    """`config.rl`, validated; hashable (the update step closes over it).

    Batch sizes: `rollout_prompts` prompts x `group_size` samples per step; one optimizer update per
    `mini_batch_prompts` prompts (x group_size rows), accumulated over micro-batches of `micro_batch_rows`
    rows; `epochs` passes over each rollout. Lengths: prompts up to `max_prompt_tokens` (0 = no limit),
    responses up to `max_new_tokens`. Buckets: shape granules for prompt / response lengths and patches
    (`infer.batching.bucket_size`); each new shape compiles the log-prob and update steps once, and a
    bucket equal to its maximum (e.g. prompt_bucket = max_prompt_tokens) fixes that dimension outright.
    `check_logprobs` (debugging, small runs: generation then returns [rows, T, vocab] logits) logs
    `logprob_gap`, the largest difference between the old log-probs of the update's forward and those of
    the logits the decode loop sampled from; it is ~1e-6 when both see the same inputs.
    """

    group_size: int = 16
    rollout_prompts: int = 512
    mini_batch_prompts: int = 128
    micro_batch_rows: int = 8
    epochs: int = 1
    max_new_tokens: int = 2048
    max_prompt_tokens: int = 2048
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    kl_coef: float = 1e-3
    clip_eps: float = 0.2
    clip_eps_high: float | None = None
    clip_ratio_dual: float | None = None
    loss_agg: str = "token-mean"
    scale_adv_by_std: bool = True
    rows_per_generate: int = 256  # rows of one generation call, all hosts together
    prompt_bucket: int = 64
    response_bucket: int = 64
    patch_bucket: int = 256
    check_logprobs: bool = False

    @classmethod
    def from_config(cls, cfg) -> GRPOSettings:
        d = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"config.rl: unknown keys {unknown}; known: {sorted(known)}")
        s = cls(**d)
        s.validate()
        return s

    @property
    def mini_batch_rows(self) -> int:
        return self.mini_batch_prompts * self.group_size

    @property
    def updates_per_step(self) -> int:
        return self.rollout_prompts // self.mini_batch_prompts * self.epochs

    def validate(self):
        for name in (
            "group_size",
            "rollout_prompts",
            "mini_batch_prompts",
            "micro_batch_rows",
            "epochs",
            "max_new_tokens",
            "rows_per_generate",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"config.rl.{name}={getattr(self, name)}: must be >= 1")
        if self.rollout_prompts % self.mini_batch_prompts:
            raise ValueError(
                f"config.rl.rollout_prompts={self.rollout_prompts} must be a multiple of "
                f"config.rl.mini_batch_prompts={self.mini_batch_prompts}"
            )
        if self.mini_batch_rows % self.micro_batch_rows:
            raise ValueError(
                f"config.rl.micro_batch_rows={self.micro_batch_rows} must divide a mini-batch of "
                f"mini_batch_prompts x group_size = {self.mini_batch_rows} rows"
            )
        if self.temperature <= 0:
            raise ValueError(f"config.rl.temperature={self.temperature}: GRPO samples, so it must be > 0")
        if self.loss_agg not in LOSS_AGG_MODES:
            raise ValueError(f"config.rl.loss_agg={self.loss_agg!r}: expected one of {LOSS_AGG_MODES}")
        SamplingConfig(self.temperature, self.top_k, self.top_p)  # raises on bad top_k / top_p


def make_reward_fn(config) -> tuple[Any, list[str]]:
    """Imports `config.reward_modules` (which register plugins), then resolves `config.rewards`
    [(name, weight), ...] now, so an unknown name fails before anything compiles."""
    for module in config.get("reward_modules") or ():
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ValueError(f"config.reward_modules: cannot import {module!r} ({e})") from e
    specs = [(str(name), float(weight)) for name, weight in (config.get("rewards") or ())]
    try:
        return combine_rewards(specs), [name for name, _ in specs]
    except ValueError as e:
        raise ValueError(f"config.rewards: {e}") from None


# ------------------------------------------------------------------------------------------- device steps
def _response_forward(module: Qwen25VL, batch: dict):
    """Logits [b, resp_len, V] at the positions that predict the response tokens (see rl.rollout)."""
    t = batch["response_tokens"].shape[1]
    p = batch["input_ids"].shape[1] - t
    hidden, _ = module(batch, return_hidden=True)
    return module.logits(hidden[:, p - 1 : p - 1 + t])


def response_log_probs(module: Qwen25VL, temperature: float, params, batch: dict) -> jax.Array:
    """log pi(response token) [b, resp_len] float32, from logits / temperature (as verl and EasyR1)."""
    logits = module.apply({"params": params}, batch, method=_response_forward)
    return token_log_probs(logits.astype(jnp.float32) / temperature, batch["response_tokens"])


def _loss_sums(module: Qwen25VL, s: GRPOSettings, params, mb: dict):
    """(loss x weight, metric sums) of one micro-batch, an `accumulate.add` loss function; weight = its
    tokens (token-mean) or sequences."""
    logits = (
        module.apply({"params": params}, mb, method=_response_forward).astype(jnp.float32) / s.temperature
    )
    logp = token_log_probs(logits, mb["response_tokens"])
    mask = mb["response_mask"]
    loss, m = grpo_loss(
        logp,
        mb["old_logp"],
        mb["ref_logp"],
        mb["advantages"],
        mask,
        clip_eps=s.clip_eps,
        clip_eps_high=s.clip_eps_high,
        kl_coef=s.kl_coef,
        loss_agg=s.loss_agg,
        clip_ratio_dual=s.clip_ratio_dual,
    )
    tokens = jnp.sum(mask).astype(jnp.float32)
    weight = tokens if s.loss_agg == "token-mean" else jnp.sum(jnp.sum(mask, -1) > 0).astype(jnp.float32)
    m["entropy"] = masked_mean(token_entropy(jax.lax.stop_gradient(logits)), mask)
    sums = {accumulate.WEIGHT: weight, "tokens": tokens, "pg_loss": m["pg_loss"] * weight}
    sums.update({k: m[k] * tokens for k in _TOKEN_METRICS})
    return loss * weight, jax.lax.stop_gradient(sums)


def update_step(tx, trainable, state: dict, acc: accumulate.Accumulator) -> tuple[dict, Any, dict]:
    """One optimizer update from a mini-batch's accumulator (`accumulate.finish`): the gradient is divided
    once by the mini-batch's token (or sequence) count, so the loss is aggregated over the whole mini-batch
    exactly as without micro-batches. An update with a non-finite loss or gradient is skipped.

    state {params, opt_state, bad_steps} -> (state, a zeroed accumulator for the next mini-batch, metrics).
    """
    loss, grads, sums = accumulate.finish(acc, state["params"], trainable)
    weight, tokens = jnp.maximum(sums[accumulate.WEIGHT], 1.0), jnp.maximum(sums["tokens"], 1.0)
    grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, state["params"])
    grad_norm = optax.tree.norm(grads)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)  # noqa: E731
    new_state = {
        "params": keep(params, state["params"]),
        "opt_state": keep(opt_state, state["opt_state"]),
        "bad_steps": jnp.where(ok, 0, state["bad_steps"] + 1),
    }
    metrics = {
        "loss": loss,
        "pg_loss": sums["pg_loss"] / weight,
        "grad_norm": grad_norm,
        "finite": ok,
        "tokens": sums["tokens"],
        **{k: sums[k] / tokens for k in _TOKEN_METRICS},
    }
    return new_state, jax.tree.map(jnp.zeros_like, acc), metrics


# ------------------------------------------------------------------------------------------- programs
@dataclasses.dataclass(frozen=True)
class _Programs:
    """The compiled device steps of a run (see `_programs`)."""

    logprob: Any  # (params, batch) -> [b, T] log-probs
    zeros: Any  # (params,) -> accumulator
    accumulate: Any  # (params, acc, micro-batch) -> acc       (acc donated)
    update: Any  # (state, acc) -> (state, acc, metrics)       (state and acc donated)
    acc_shardings: Any  # the accumulator's (`accumulate.sharding_like`)


# Compiled steps are cached per static key, like `infer.generate.compiled_program`, so that several runs
# in one process (tests, sweeps, a resume after a stop) compile each program once.
_PROGRAMS: dict = {}


def _optim_key(config) -> str:
    optim = config.optim.to_dict() if hasattr(config.optim, "to_dict") else dict(config.optim)
    return json.dumps(optim, sort_keys=True, default=repr)


def _programs(model_cfg, opt_info, tx, s: GRPOSettings, train_shard: dict, mesh, optim_key: str) -> _Programs:
    """Jitted steps with explicit shardings; `tx` and `opt_info` must be the optimizer `optim_key` (its
    config) describes."""
    leaves, treedef = jax.tree.flatten(train_shard)
    key = (model_cfg, s, optim_key, treedef, tuple(leaves))
    if key not in _PROGRAMS:
        if len(_PROGRAMS) >= 8:
            _PROGRAMS.clear()
        module = Qwen25VL(model_cfg)
        trainable = opt_info.trainable_mask
        replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        p_shard = train_shard["params"]
        acc_shard = accumulate.sharding_like(p_shard, replicated, _SUM_KEYS, trainable)
        _PROGRAMS[key] = _Programs(
            logprob=jax.jit(functools.partial(response_log_probs, module, s.temperature)),
            zeros=jax.jit(
                functools.partial(accumulate.zeros, names=_SUM_KEYS, trainable=trainable),
                in_shardings=(p_shard,),
                out_shardings=acc_shard,
            ),
            accumulate=jax.jit(
                functools.partial(
                    accumulate.add, functools.partial(_loss_sums, module, s), trainable=trainable
                ),
                in_shardings=(p_shard, acc_shard, None),
                out_shardings=acc_shard,
                donate_argnums=(1,),
            ),
            update=jax.jit(
                functools.partial(update_step, tx, trainable),
                in_shardings=(train_shard, acc_shard),
                out_shardings=(train_shard, acc_shard, None),
                donate_argnums=(0, 1),
            ),
            acc_shardings=acc_shard,
        )
    return _PROGRAMS[key]


def grpo_programs(program, s: GRPOSettings) -> _Programs:
    """The jitted GRPO steps of a training program (`train/program.py`): what `train` runs and what the AOT
    tool (`aot/rl.py`) compiles for a TPU slice. State shardings are the program's: the parameters, their
    optimizer moments, a replicated bad-step counter."""
    train_shard = {
        "params": program.param_shardings,
        "opt_state": program.opt_shardings,
        "bad_steps": program.replicated,
    }
    return _programs(
        program.model_config,
        program.opt_info,
        program.tx,
        s,
        train_shard,
        program.mesh,
        _optim_key(program.config),
    )


# ------------------------------------------------------------------------------------------- the run
_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


class CompileClock:
    """Seconds JAX spends tracing, lowering and compiling, from its `jax.monitoring` duration events;
    `lap()` returns the seconds since the previous lap. Metrics `time/compile/*` come from it, so the
    step times can be read with and without compilation."""

    def __init__(self):
        self.seconds = 0.0

    def _listen(self, event: str, duration: float, **kwargs):
        if event in _COMPILE_EVENTS:
            self.seconds += duration

    def install(self) -> CompileClock:
        jax.monitoring.register_event_duration_secs_listener(self._listen)
        return self

    def uninstall(self):
        jax.monitoring.unregister_event_duration_listener(self._listen)

    def lap(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds


@dataclasses.dataclass
class _Run:
    """What every step needs: the model, mesh, processor, settings and the compiled functions."""

    config: ml_collections.ConfigDict
    settings: GRPOSettings
    model_cfg: Any
    mesh: Any
    rules: Any
    processor: Any
    reward_fn: Any
    workdir: str = ""
    programs: _Programs | None = None
    compile_clock: CompileClock = dataclasses.field(default_factory=CompileClock)

    @property
    def pad_id(self) -> int:
        return int(self.processor.tokenizer.pad_token_id)

    @property
    def stop_ids(self) -> tuple[int, ...]:
        return tuple(int(t) for t in self.processor.tokenizer.eos_token_ids)

    @property
    def sampling(self) -> SamplingConfig:
        s = self.settings
        return SamplingConfig(s.temperature, s.top_k, s.top_p)

    def global_batch(self, batch: dict, micro_axis: bool = False) -> dict:
        return sharding.global_batch(batch, self.mesh, self.rules, micro_axis=micro_axis)

    @property
    def hosts(self) -> int:
        return jax.process_count()

    @property
    def micro_rows(self) -> int:
        """This host's rows of a micro-batch."""
        return self.settings.micro_batch_rows // self.hosts

    @property
    def vision_chunks(self) -> int:
        """This host's chunks of a batch's vision stream (attention_impl="splash": one per device)."""
        return stream_chunks(self.model_cfg, self.mesh, generation_rules(self.rules), self.hosts)


def check_batch_shards(s: GRPOSettings, model_cfg, mesh, rules, hosts: int = 1):
    """ValueError unless the micro-batches, generation calls and prompts divide over the mesh and hosts."""
    n = batch_shards(mesh, generation_rules(rules))
    stream_chunks(model_cfg, mesh, generation_rules(rules), hosts)  # splash: the stream split like the rows
    if s.micro_batch_rows % n:
        raise ValueError(
            f"config.rl.micro_batch_rows={s.micro_batch_rows} must be a multiple of the mesh's batch "
            f"shards ({n} = data x fsdp in config.mesh)"
        )
    if n % hosts:
        raise ValueError(
            f"{hosts} processes: the mesh splits the batch {n} ways (data x fsdp in config.mesh), which must "
            "be a multiple of the process count (each host feeds its own rows)"
        )
    if s.rollout_prompts % hosts:
        raise ValueError(
            f"config.rl.rollout_prompts={s.rollout_prompts} must be a multiple of the process count "
            f"({hosts}): each host samples an equal share of whole prompt groups"
        )


def _prompts(config, processor, s: GRPOSettings) -> list:
    prompts = load_prompts(config.data, config.seed)
    if config.data.get("filter_overlong") and s.max_prompt_tokens:
        kept = filter_overlong(processor, prompts, s.max_prompt_tokens)
        log.info("dropped %d prompts longer than %d tokens", len(prompts) - len(kept), s.max_prompt_tokens)
        prompts = kept
    if not prompts:
        raise ValueError("config.data: no prompts left after filtering")
    return prompts


def _collect(run: _Run, params, prompts, key, prompt_ids) -> Rollout:
    """Samples the rollout of this host's `prompts` (their indices in the step: `prompt_ids`) with the
    current policy; lengths that shape the update's batches are agreed across hosts."""
    s = run.settings
    encoded = [encode_prompt(run.processor, p, s.max_prompt_tokens) for p in prompts]
    check_vision_spans(run.model_cfg, prompts, encoded)
    tokens, lengths, behaviour = sample_responses(
        run.model_cfg,
        params,
        encoded,
        s.group_size,
        s.max_new_tokens,
        run.sampling,
        key,
        run.stop_ids,
        run.pad_id,
        rows_per_call=max(s.group_size, s.rows_per_generate // run.hosts),
        mesh=run.mesh,
        rules=run.rules,
        behaviour_logp=s.check_logprobs,
        prompt_ids=prompt_ids,
    )
    ro = Rollout(
        list(prompts),
        encoded,
        s.group_size,
        tokens,
        lengths,
        s.prompt_bucket,
        s.response_bucket,
        s.patch_bucket,
        s.max_new_tokens,
        behaviour_logp=behaviour,
    )
    ro.prompt_len, ro.resp_len = (int(n) for n in sharding.process_max([ro.prompt_len, ro.resp_len]))
    return ro


def _log_probs(run: _Run, params, ro: Rollout, budget: int) -> np.ndarray:
    """[R, resp_len] log-probs of this host's sampled tokens under `params`, in micro-batches of rows."""
    m = run.micro_rows
    out = []
    for start in range(0, ro.num_rows, m):
        rows = np.arange(start, start + m)
        rows = np.where(rows < ro.num_rows, rows, -1)
        batch = ro.model_batch(run.model_cfg, rows, run.pad_id, budget, run.vision_chunks)
        batch = {k: v for k, v in batch.items() if k not in _UPDATE_ONLY}  # one program for both passes
        logp = run.programs.logprob(params, run.global_batch(batch))
        out.append(sharding.host_rows(logp)[:, : ro.resp_len])
    return np.concatenate(out)[: ro.num_rows]


def _minibatch_micro_rows(run: _Run, rows: np.ndarray, local_rows: int) -> list[np.ndarray]:
    """The global rows of one mini-batch -> this host's micro-batches of local row indices (-1: an empty
    row). Host h holds global rows [h * local_rows, (h + 1) * local_rows); every host sends as many
    micro-batches as the host holding most of the mini-batch's rows needs (all of them with one host)."""
    owner = rows // local_rows
    mine = rows[owner == jax.process_index()] - jax.process_index() * local_rows
    most = int(np.bincount(owner, minlength=run.hosts).max())
    m = run.micro_rows
    padded = np.full(-(-most // m) * m, -1, np.int64)
    padded[: len(mine)] = mine
    return [padded[k : k + m] for k in range(0, len(padded), m)]


def _update(run: _Run, state: dict, ro: Rollout, budget: int, step: int) -> tuple[dict, list[dict]]:
    """`epochs` shuffled passes over the rollout; one optimizer update per mini-batch, its gradient
    accumulated over micro-batches sent one by one (host batch building overlaps device work)."""
    s, prog = run.settings, run.programs
    metrics = []
    acc = prog.zeros(state["params"])
    global_rows = ro.num_rows * run.hosts
    for epoch in range(s.epochs):
        order = np.random.default_rng([run.config.seed, step, epoch]).permutation(global_rows)
        for start in range(0, global_rows, s.mini_batch_rows):
            for micro in _minibatch_micro_rows(run, order[start : start + s.mini_batch_rows], ro.num_rows):
                mb = ro.model_batch(run.model_cfg, micro, run.pad_id, budget, run.vision_chunks)
                acc = prog.accumulate(state["params"], acc, run.global_batch(mb))
            state, acc, m = prog.update(state, acc)
            m = jax.device_get(m)
            if not bool(m["finite"]):
                log.warning("step %d: non-finite loss or gradient; update skipped", step)
                if int(state["bad_steps"]) >= run.config.train.max_bad_steps:
                    raise FloatingPointError(
                        f"{run.config.train.max_bad_steps} consecutive updates with a non-finite "
                        "loss or gradient (config.train.max_bad_steps); stopping"
                    )
            metrics.append(m)
    return state, metrics


def _step(run: _Run, state: dict, ref_params, prompts, prompt_ids, key, step: int) -> tuple[dict, dict]:
    """One rollout step over this host's `prompts`: sample, score, log-probs, updates. -> (state, metrics
    row of the whole step, all hosts)."""
    s, clock = run.settings, run.compile_clock
    clock.lap()
    t0 = time.perf_counter()
    ro = _collect(run, state["params"], prompts, key, prompt_ids)
    t1 = time.perf_counter()
    compile_rollout = clock.lap()
    ro.score(run.processor, run.reward_fn, s.scale_adv_by_std)
    t2 = time.perf_counter()
    budget = int(sharding.process_max([ro.patch_budget(run.micro_rows, run.vision_chunks)])[0])
    ro.old_logp = _log_probs(run, state["params"], ro, budget)
    ro.ref_logp = _log_probs(run, ref_params, ro, budget) if s.kl_coef else ro.old_logp
    t3 = time.perf_counter()
    state, updates = _update(run, state, ro, budget, step)
    t4 = time.perf_counter()
    compile_update = clock.lap()
    row = _rollout_metrics(run, ro)
    row.update(_update_metrics(updates))
    if ro.behaviour_logp is not None:
        row["logprob_gap"] = float(sharding.process_max([ro.logprob_gap()])[0])
    _write_samples(run, ro, step)
    local_tokens = sum(len(e["input_ids"][0]) for e in ro.encoded) * s.group_size + ro.lengths.sum()
    seq_tokens = float(sharding.process_concat([local_tokens]).sum())
    sampled_tokens = float(sharding.process_concat([ro.lengths.sum()]).sum())
    row.update(
        {
            "time/rollout": t1 - t0,
            "time/reward": t2 - t1,
            "time/logprob": t3 - t2,
            "time/update": t4 - t3,
            "time/step": t4 - t0,
            "time/update_per_minibatch": (t4 - t3) / max(len(updates), 1),
            "time/compile/rollout": compile_rollout,
            "time/compile/update": compile_update,  # log-prob and update programs
            "rollout_tokens_per_s": sampled_tokens / max(t1 - t0, 1e-9),
            "update_tokens_per_s": seq_tokens * s.epochs / max(t4 - t3, 1e-9),
        }
    )
    return state, row


def _write_samples(run: _Run, ro: Rollout, step: int):
    """Appends the first `train.log_samples` responses of a step (text, reference, rewards) to
    `samples.jsonl` in the workdir: what the policy actually writes, next to the curves."""
    n = int(run.config.train.get("log_samples", 0))
    if not n or not run.workdir or jax.process_index() != 0:  # host 0 holds the step's first rows
        return
    with open(os.path.join(run.workdir, "samples.jsonl"), "a", encoding="utf-8") as f:
        for r in range(min(n, ro.num_rows)):
            row = {
                "step": step,
                "row": r,
                "response": ro.texts[r],
                "reward": float(ro.rewards[r]),
                "rewards": {k: float(v[r]) for k, v in ro.per_reward.items()},
                "reference": ro.prompts[ro.prompt_of_row[r]].reference,
            }
            f.write(json.dumps(row, default=list) + "\n")


def _rollout_metrics(run: _Run, ro: Rollout) -> dict:
    """Rewards (total and each, unweighted), response lengths, truncation, uninformative groups: over
    the whole rollout (every host's rows gathered, in the global row order)."""
    rewards = sharding.process_concat(ro.rewards)
    row = {"reward": float(rewards.mean()), "reward/std": float(rewards.std())}
    for k in sorted(ro.per_reward):
        row[f"reward/{k}"] = float(np.mean(sharding.process_concat(np.asarray(ro.per_reward[k], np.float32))))
    groups = rewards.reshape(-1, ro.group_size)
    row["zero_advantage_groups"] = float(np.mean(groups.max(1) == groups.min(1)))
    last = ro.tokens[np.arange(ro.num_rows), np.maximum(ro.lengths - 1, 0)]
    lengths = sharding.process_concat(ro.lengths)
    truncated = sharding.process_concat(~np.isin(last, run.stop_ids))
    row["response_length"] = float(lengths.mean())
    row["response_length/max"] = float(lengths.max())
    row["response_truncated"] = float(np.mean(truncated))
    return row


def _update_metrics(updates: list[dict]) -> dict:
    """Loss and grad norm averaged over the step's updates; token metrics weighted by tokens."""
    tokens = np.array([float(m["tokens"]) for m in updates])
    row = {k: float(np.mean([float(m[k]) for m in updates])) for k in ("loss", "pg_loss", "grad_norm")}
    for k in _TOKEN_METRICS:
        row[k] = float(np.sum([float(m[k]) * t for m, t in zip(updates, tokens)]) / max(tokens.sum(), 1.0))
    row["skipped_updates"] = float(sum(not bool(m["finite"]) for m in updates))
    return row


def _log_row(window: list[dict], step: int, s: GRPOSettings, opt_info, schedule: PromptSchedule) -> dict:
    """The metrics row of a log step: the window's step metrics averaged, learning rates, data position."""
    row = _average(window)
    updates = step * s.updates_per_step
    row.update({f"lr/{g}": float(lr) for g, lr in opt_info.current_lrs(updates - 1).items()})
    position = schedule.position(step + 1)
    row.update({"updates": updates, "data/position": position, "data/epoch": position / schedule.num_prompts})
    rewards = {k[7:]: round(v, 3) for k, v in row.items() if k.startswith("reward/")}
    log.info(
        "step %d: reward %.3f %s kl %.2e clip %.3f length %.1f rollout %.1fs (%.0f tokens/s) update %.1fs",
        step,
        row["reward"],
        rewards,
        row["kl"],
        row["clip_fraction"],
        row["response_length"],
        row["time/rollout"],
        row["rollout_tokens_per_s"],
        row["time/update"],
    )
    return row


def _average(rows: list[dict]) -> dict:
    """Mean of each metric over the steps since the last log row."""
    keys = {k for r in rows for k in r}
    return {k: float(np.mean([r[k] for r in rows if k in r])) for k in sorted(keys)}


# ------------------------------------------------------------------------------------------- state
_TRAIN_KEYS = ("params", "opt_state", "bad_steps")


def _initial_state(config, ref_params, program, ckpt: Checkpointer) -> tuple[dict, dict]:
    """(full state {params, opt_state, bad_steps, step, rng, data_position}, its shardings): the latest
    checkpoint, else a fresh copy of the reference parameters (the reference itself stays frozen)."""
    replicated, p_shard = program.replicated, program.param_shardings
    shard = {
        "params": p_shard,
        "opt_state": program.opt_shardings,  # moments sharded like their parameters
        "bad_steps": replicated,
        "step": replicated,
        "rng": replicated,
        "data_position": replicated,
    }
    key_data = jax.random.key_data(jax.random.key(config.seed))
    if ckpt.latest_step() is not None:
        scalar = jax.ShapeDtypeStruct((), jnp.int32)
        like = {
            **{k: v for k, v in program.abstract_state().items() if k in ("params", "opt_state")},
            "bad_steps": scalar,
            "step": scalar,
            "rng": jax.ShapeDtypeStruct(key_data.shape, key_data.dtype),
            "data_position": scalar,
        }
        abstract = jax.tree.map(
            lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh), like, shard
        )
        return ckpt.restore(None, abstract), shard
    with sharding.mesh_context(program.mesh, program.rules):
        params = jax.jit(lambda p: jax.tree.map(jnp.copy, p), out_shardings=p_shard)(ref_params)
    opt_state = program.init_state(params)["opt_state"]
    extra = {"bad_steps": np.int32(0), "step": np.int32(0), "rng": key_data, "data_position": np.int32(0)}
    full = {"params": params, "opt_state": opt_state, **jax.device_put(extra, {k: shard[k] for k in extra})}
    return full, shard


def _full_state(state: dict, step: int, key, position: int, shard: dict) -> dict:
    extra = {"step": np.int32(step), "rng": jax.random.key_data(key), "data_position": np.int32(position)}
    return {**state, **jax.device_put(extra, {k: shard[k] for k in extra})}


class GRPOSteps:
    """What `train.loop.run_loop` calls for GRPO: one rollout step (this host's block of the step's prompts,
    sampling key fold_in(key, step)), one metrics row (the window averaged), one checkpoint (state, rng,
    prompt index)."""

    def __init__(self, run: _Run, ref_params, prompts, schedule, key, shard, ckpt, opt_info):
        self.run, self.ref_params, self.prompts, self.schedule = run, ref_params, prompts, schedule
        self.key, self.shard, self.ckpt, self.opt_info = key, shard, ckpt, opt_info

    def step(self, state: dict, step: int) -> tuple[dict, dict]:
        indices = self.schedule.indices(step)
        share = len(indices) // jax.process_count()
        mine = np.arange(jax.process_index() * share, (jax.process_index() + 1) * share)  # in the step
        batch_prompts = [self.prompts[i] for i in indices[mine]]
        key = jax.random.fold_in(self.key, step)
        return _step(self.run, state, self.ref_params, batch_prompts, mine, key, step)

    def log(self, step: int, rows: list[dict]) -> dict:
        return _log_row(rows, step, self.run.settings, self.opt_info, self.schedule)

    def save(self, step: int, state: dict, metrics: dict):
        full = _full_state(state, step, self.key, self.schedule.position(step + 1), self.shard)
        self.ckpt.save(step, full, metrics=metrics)


# ------------------------------------------------------------------------------------------- the loop
def train(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs (or resumes) GRPO; returns the last logged metrics. Rerun the same command to resume. The loop
    (metrics, checkpoints, preemption, export) is `train/loop.py`'s, shared with SFT."""
    loop.start_run(config, workdir)
    if config.get("prepare_demo_data"):
        prepare_easy_vqa_prompts(config.prepare_demo_data)
    s = GRPOSettings.from_config(config.rl)
    reward_fn, _ = make_reward_fn(config)

    # ---- the program (model, optimizer, shardings: train/program.py), policy + frozen reference -----------
    program = build_train_program(config, sharding.make_mesh(config.mesh))
    check_batch_shards(s, program.model_config, program.mesh, program.rules, jax.process_count())
    ref_params = loop.initial_params(program, config.seed)  # init_from: the stage-3 model

    # ---- prompts, processor ----------------------------------------------------------------------------
    assets = loop.assets_dir(config, program.init_path)
    processor = rl_processor(assets, config.data.get("max_pixels"))
    run = _Run(config, s, program.model_config, program.mesh, program.rules, processor, reward_fn, workdir)
    prompts = _prompts(config, run.processor, s)
    schedule = PromptSchedule(
        len(prompts), s.rollout_prompts, config.seed, bool(config.data.get("shuffle", True))
    )

    # ---- state and resume, compiled steps ---------------------------------------------------------------
    ckpt = loop.make_checkpointer(config, workdir)
    full, shard = _initial_state(config, ref_params, program, ckpt)
    start, key = int(full["step"]), jax.random.wrap_key_data(full["rng"])
    run.programs = grpo_programs(program, s)
    if jax.process_index() == 0:
        truncate_after(os.path.join(workdir, "samples.jsonl"), start)
    grpo = GRPOSteps(run, ref_params, prompts, schedule, key, shard, ckpt, program.opt_info)

    # ---- loop and export --------------------------------------------------------------------------------
    run.compile_clock.install()
    try:
        with sharding.mesh_context(program.mesh, program.rules):
            state = {k: full[k] for k in _TRAIN_KEYS}
            result = loop.run_loop(
                config, workdir, ckpt, state, start, grpo.step, grpo.log, grpo.save, plot=False
            )
    finally:
        run.compile_clock.uninstall()
    if jax.process_index() == 0:
        plot_curves(os.path.join(workdir, "metrics.jsonl"), os.path.join(workdir, "curves.png"), CURVE_KEYS)
    if result.completed:
        loop.finish(config, workdir, program.model_config, result.state["params"], assets)
    return result.last
