"""GRPO training loop (Lingshu stage 4, RLVR), readable top to bottom like the SFT trainer.

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

`update_step(state, batch)` is pure: batch leaves are [K micro-batches, micro rows, ...]; the loss of the
mini-batch is aggregated over all its tokens (or sequences) at once, exactly as without accumulation,
and an update with a non-finite loss or gradient is skipped (the SFT trainer's guard). Gradients are
taken for every parameter; parameters in a frozen optimizer group get a zero update.

Resume: the checkpoint holds params, optimizer state, step, the base RNG key and the data position; the
prompts and the sampling key of step s are functions of (seed, s), so a resumed run repeats exactly the
rollouts an uninterrupted run would have made.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
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
from lingshu_jax.infer.generate import batch_shards, generation_rules
from lingshu_jax.infer.sampling import SamplingConfig
from lingshu_jax.model.vlm import Qwen25VL, abstract_params, init_params
from lingshu_jax.rl.data import PromptSchedule, load_prompts
from lingshu_jax.rl.loss import LOSS_AGG_MODES, grpo_loss, masked_mean, token_entropy, token_log_probs
from lingshu_jax.rl.rewards import combine_rewards
from lingshu_jax.rl.rollout import Rollout, encode_prompt, filter_overlong, sample_responses
from lingshu_jax.train.checkpoint import Checkpointer
from lingshu_jax.train.metrics import MetricsWriter, plot_curves
from lingshu_jax.train.optimizer import make_optimizer
from lingshu_jax.train.trainer import (_assets_dir, _finish, _model_config, _Preemption, _stack,
                                       _write_config)

log = logging.getLogger(__name__)

CURVE_KEYS = ("reward", "reward/accuracy", "reward/format", "kl", "entropy", "response_length")
_TOKEN_METRICS = ("kl", "clip_fraction", "ratio_mean", "ppo_kl", "entropy")


# ------------------------------------------------------------------------------------------- settings
@dataclasses.dataclass(frozen=True)
class GRPOSettings:
    """`config.rl`, validated; hashable (the update step closes over it).

    Batch sizes: `rollout_prompts` prompts x `group_size` samples per step; one optimizer update per
    `mini_batch_prompts` prompts (x group_size rows), accumulated over micro-batches of `micro_batch_rows`
    rows; `epochs` passes over each rollout. Lengths: prompts up to `max_prompt_tokens` (0 = no limit),
    responses up to `max_new_tokens`. Buckets: shape granules for prompt / response lengths and patches.
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
    rows_per_generate: int = 256
    prompt_bucket: int = 64
    response_bucket: int = 64
    patch_bucket: int = 256

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
        for name in ("group_size", "rollout_prompts", "mini_batch_prompts", "micro_batch_rows", "epochs",
                     "max_new_tokens", "rows_per_generate"):
            if getattr(self, name) < 1:
                raise ValueError(f"config.rl.{name}={getattr(self, name)}: must be >= 1")
        if self.rollout_prompts % self.mini_batch_prompts:
            raise ValueError(f"config.rl.rollout_prompts={self.rollout_prompts} must be a multiple of "
                             f"config.rl.mini_batch_prompts={self.mini_batch_prompts}")
        if self.mini_batch_rows % self.micro_batch_rows:
            raise ValueError(f"config.rl.micro_batch_rows={self.micro_batch_rows} must divide a mini-batch of "
                             f"mini_batch_prompts x group_size = {self.mini_batch_rows} rows")
        if self.temperature <= 0:
            raise ValueError(f"config.rl.temperature={self.temperature}: GRPO samples, so it must be > 0")
        if self.loss_agg not in LOSS_AGG_MODES:
            raise ValueError(f"config.rl.loss_agg={self.loss_agg!r}: expected one of {LOSS_AGG_MODES}")
        SamplingConfig(self.temperature, self.top_k, self.top_p)  # raises on bad top_k / top_p


def make_reward_fn(config) -> tuple[Any, list[str]]:
    """Imports `config.reward_modules` (which register plugins), then resolves `config.rewards`
    [(name, weight), ...] now, so an unknown name fails before anything compiles."""
    for module in config.get("reward_modules") or ():
        importlib.import_module(module)
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
    return module.logits(hidden[:, p - 1:p - 1 + t])


def response_log_probs(module: Qwen25VL, temperature: float, params, batch: dict) -> jax.Array:
    """log pi(response token) [b, resp_len] float32, from logits / temperature (as verl and EasyR1)."""
    logits = module.apply({"params": params}, batch, method=_response_forward)
    return token_log_probs(logits.astype(jnp.float32) / temperature, batch["response_tokens"])


def _loss_sums(module: Qwen25VL, s: GRPOSettings, params, mb: dict):
    """(loss x weight, metric sums) of one micro-batch; weight = its tokens (token-mean) or sequences."""
    logits = module.apply({"params": params}, mb, method=_response_forward).astype(jnp.float32) / s.temperature
    logp = token_log_probs(logits, mb["response_tokens"])
    mask = mb["response_mask"]
    loss, m = grpo_loss(logp, mb["old_logp"], mb["ref_logp"], mb["advantages"], mask, clip_eps=s.clip_eps,
                        clip_eps_high=s.clip_eps_high, kl_coef=s.kl_coef, loss_agg=s.loss_agg,
                        clip_ratio_dual=s.clip_ratio_dual)
    tokens = jnp.sum(mask).astype(jnp.float32)
    weight = tokens if s.loss_agg == "token-mean" else jnp.sum(jnp.sum(mask, -1) > 0).astype(jnp.float32)
    m["entropy"] = masked_mean(token_entropy(jax.lax.stop_gradient(logits)), mask)
    sums = {"weight": weight, "tokens": tokens, "loss": loss * weight, "pg_loss": m["pg_loss"] * weight}
    sums.update({k: m[k] * tokens for k in _TOKEN_METRICS})
    return loss * weight, jax.lax.stop_gradient(sums)


def _accumulate(loss_fn, params, batch: dict):
    """Sums of gradients and metric sums over the micro-batch axis (scan). -> (grads f32, sums)."""
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    first = jax.tree.map(lambda x: x[0], batch)
    zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, jnp.float32), jax.eval_shape(loss_fn, params, first)[1])

    def body(carry, mb):
        g_acc, s_acc = carry
        (_, sums), g = grad_fn(params, mb)
        return (jax.tree.map(lambda a, b: a + b.astype(jnp.float32), g_acc, g), jax.tree.map(jnp.add, s_acc, sums)), None

    init = (jax.tree.map(lambda x: jnp.zeros(x.shape, jnp.float32), params), zeros)
    (grads, sums), _ = jax.lax.scan(body, init, batch)
    return grads, sums


def update_step(module: Qwen25VL, tx, s: GRPOSettings, state: dict, batch: dict) -> tuple[dict, dict]:
    """One optimizer update on one mini-batch. state {params, opt_state, bad_steps}; batch leaves
    [K, micro, ...] with response_tokens/mask, old_logp, ref_logp [K, micro, T], advantages [K, micro]."""
    grads, sums = _accumulate(functools.partial(_loss_sums, module, s), state["params"], batch)
    weight, tokens = jnp.maximum(sums["weight"], 1.0), jnp.maximum(sums["tokens"], 1.0)
    grads = jax.tree.map(lambda g, p: (g / weight).astype(p.dtype), grads, state["params"])
    grad_norm = optax.tree.norm(grads)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    loss = sums["loss"] / weight
    ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)  # noqa: E731
    new_state = {"params": keep(params, state["params"]), "opt_state": keep(opt_state, state["opt_state"]),
                 "bad_steps": jnp.where(ok, 0, state["bad_steps"] + 1)}
    metrics = {"loss": loss, "pg_loss": sums["pg_loss"] / weight, "grad_norm": grad_norm, "finite": ok,
               "tokens": sums["tokens"], **{k: sums[k] / tokens for k in _TOKEN_METRICS}}
    return new_state, metrics
