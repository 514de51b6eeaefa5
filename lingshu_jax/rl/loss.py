"""GRPO in pure JAX: group advantages, token log-probs, and the clipped surrogate with a k3 KL penalty.

Lingshu stage 4 (paper §3): GRPO, 16 samples per prompt, KL coefficient 1e-3, reward = format x0.5 +
accuracy x1.0. Conventions follow verl / EasyR1 (the framework family Lingshu-RL builds on):

- Advantages (`group_advantages`): ``(r - mean_g) / (std_g + eps)`` with the *sample* standard deviation
  (Bessel-corrected, ddof=1). verl's and EasyR1's ``compute_grpo_outcome_advantage`` call ``torch.std``,
  whose default is ``unbiased=True``; eps is 1e-6 in both. A group of one gets mean 0, std 1 there, so
  its advantage is its raw reward; we do the same.
- Surrogate: token-level PPO clip, ``max(-A * r, -A * clip(r, 1 - eps_low, 1 + eps_high))`` with
  ``r = exp(logp - old_logp)``; the log-ratio is clamped to [-20, 20] before ``exp`` (verl).
- KL: k3 / "low_var_kl", ``exp(ref - logp) - (ref - logp) - 1``, clamped to [-10, 10] (verl and EasyR1),
  added to every response token as ``kl_coef * k3`` and aggregated like the policy term
  (``loss = pg_loss + kl_coef * kl_loss``, as in EasyR1's ``dp_actor.update_policy``).
- Aggregation: ``"token-mean"`` by default, the default of verl (``loss_agg_mode="token-mean"``) and of
  EasyR1 (``loss_avg_mode="token"``: every response token of the mini-batch weighs the same).
  ``"seq-mean-token-mean"`` (the GRPO paper's 1/|o_i| per sequence, then the mean over sequences) is
  offered as well.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

LOSS_AGG_MODES = ("token-mean", "seq-mean-token-mean")
_LOG_RATIO_CLAMP = 20.0  # verl clamps log(pi/pi_old) and log(pi_ref/pi) to [-20, 20] before exp
_KL_CLAMP = 10.0  # verl / EasyR1 clamp the k3 value to [-10, 10]


def group_advantages(
    rewards: jax.Array, group_size: int, eps: float = 1e-6, scale_by_std: bool = True
) -> jax.Array:
    """GRPO outcome advantages, normalised inside each group of samples of one prompt.

    Args:
      rewards: [P*G] float, samples of one prompt contiguous (prompt-major).
      group_size: G, samples per prompt.
      eps: added to the group std (not inside a sqrt), as in verl.
      scale_by_std: False gives Dr. GRPO's ``r - mean`` (verl ``norm_adv_by_std_in_grpo=False``).

    Returns:
      [P*G] float32 advantages. A group whose rewards are all equal gets exactly 0 (no NaN).
    """
    rewards = jnp.asarray(rewards, jnp.float32)
    if rewards.ndim != 1 or group_size < 1 or rewards.shape[0] % group_size:
        raise ValueError(
            f"group_advantages: rewards of shape {rewards.shape} cannot be split into groups of {group_size}"
        )
    if group_size == 1:  # verl: a lone sample keeps its reward (mean 0, std 1)
        return rewards
    groups = rewards.reshape(-1, group_size)
    centred = groups - groups.mean(axis=1, keepdims=True)
    if scale_by_std:
        centred = centred / (groups.std(axis=1, ddof=1, keepdims=True) + eps)
    return centred.reshape(-1)


def token_log_probs(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """log softmax(logits)[target] per position, in float32.

    Gathers the target logit and subtracts the log-partition (``logsumexp``), which equals
    ``take_along_axis(log_softmax(logits), targets)`` without building the [B, T, V] log-softmax.

    Args:
      logits: [B, T, V] any float dtype (cast to float32 first).
      targets: [B, T] int token ids (the token *predicted* at each position, i.e. already shifted).

    Returns:
      [B, T] float32.
    """
    logits = logits.astype(jnp.float32)
    picked = jnp.take_along_axis(logits, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return picked - jax.nn.logsumexp(logits, axis=-1)


def token_entropy(logits: jax.Array) -> jax.Array:
    """Entropy of the categorical distribution at each position, in float32.

    ``H = logsumexp(z) - sum(softmax(z) * z)`` (stable for large logits).

    Args:
      logits: [B, T, V].

    Returns:
      [B, T] float32, in nats.
    """
    logits = logits.astype(jnp.float32)
    probs = jax.nn.softmax(logits, axis=-1)
    return jax.nn.logsumexp(logits, axis=-1) - jnp.sum(probs * logits, axis=-1)


def k3_kl(logp: jax.Array, ref_logp: jax.Array) -> jax.Array:
    """Schulman's k3 estimator of KL(pi || pi_ref) per token: ``exp(d) - d - 1``, ``d = ref_logp - logp``.

    Non-negative, unbiased, low variance. ``d`` is clamped to [-20, 20] and the value to at most 10, as
    in verl's ``kl_penalty(..., "low_var_kl")``.

    Args:
      logp, ref_logp: [B, T] float.

    Returns:
      [B, T] float32.
    """
    d = jnp.clip(ref_logp.astype(jnp.float32) - logp.astype(jnp.float32), -_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)
    return jnp.clip(jnp.exp(d) - d - 1.0, -_KL_CLAMP, _KL_CLAMP)


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of x over positions where mask is 1; 0 when the mask is empty. x, mask: same shape."""
    mask = mask.astype(jnp.float32)
    return jnp.sum(jnp.where(mask > 0, x, 0.0)) / jnp.maximum(jnp.sum(mask), 1.0)


def aggregate(
    per_token: jax.Array, mask: jax.Array, mode: str = "token-mean", normalizer: Optional[jax.Array] = None
) -> jax.Array:
    """Reduce a [B, T] per-token loss to a scalar.

    Modes:
      "token-mean": sum over valid tokens / number of valid tokens (or / ``normalizer``, e.g. the token
        count of the whole mini-batch when gradients are accumulated over micro-batches, as EasyR1 does).
      "seq-mean-token-mean": per sequence, mean over its valid tokens; then mean over the sequences that
        have at least one valid token (all-padding rows are ignored instead of producing NaN).

    Args:
      per_token: [B, T] float.  mask: [B, T] bool or {0, 1}.  normalizer: optional scalar.

    Returns:
      scalar float32.
    """
    m = mask.astype(jnp.float32)
    x = jnp.where(m > 0, per_token.astype(jnp.float32), 0.0)
    if mode == "token-mean":
        denom = jnp.maximum(jnp.sum(m), 1.0) if normalizer is None else normalizer
        return jnp.sum(x) / denom
    if mode == "seq-mean-token-mean":
        if normalizer is not None:
            raise ValueError("aggregate: `normalizer` only applies to loss_agg='token-mean'")
        tokens = jnp.sum(m, axis=-1)
        seq_loss = jnp.sum(x, axis=-1) / jnp.maximum(tokens, 1.0)
        has_tokens = (tokens > 0).astype(jnp.float32)
        return jnp.sum(seq_loss * has_tokens) / jnp.maximum(jnp.sum(has_tokens), 1.0)
    raise ValueError(f"aggregate: unknown loss_agg {mode!r}; expected one of {LOSS_AGG_MODES}")


def grpo_loss(
    logp: jax.Array,
    old_logp: jax.Array,
    ref_logp: jax.Array,
    advantages: jax.Array,
    mask: jax.Array,
    clip_eps: float = 0.2,
    clip_eps_high: Optional[float] = None,
    kl_coef: float = 1e-3,
    loss_agg: str = "token-mean",
    clip_ratio_dual: Optional[float] = None,
    normalizer: Optional[jax.Array] = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """GRPO objective (to minimise) over the response tokens of a batch.

    per token: ``max(-A r, -A clip(r, 1 - clip_eps, 1 + clip_eps_high)) + kl_coef * k3(logp, ref_logp)``,
    ``r = exp(logp - old_logp)``; then ``aggregate(per_token, mask, loss_agg)``.
    Gradients flow only through ``logp``: old_logp, ref_logp and advantages are stop-gradient'ed, and
    masked positions (prompt, padding) are replaced by 0 before any arithmetic, so whatever they hold
    (even inf/NaN) changes neither the loss nor any gradient.

    Args:
      logp: [B, T] current-policy log-probs of the sampled tokens (differentiable).
      old_logp: [B, T] log-probs of the policy that sampled the rollouts.
      ref_logp: [B, T] log-probs of the frozen reference policy.
      advantages: [B] one advantage per sequence (broadcast over its tokens).
      mask: [B, T] 1 on response tokens, 0 on prompt and padding.
      clip_eps: lower clip range (and upper one when ``clip_eps_high`` is None).
      clip_eps_high: DAPO "clip-higher" upper range (EasyR1 defaults to 0.3; plain GRPO/PPO uses 0.2).
      kl_coef: weight of the k3 KL term (Lingshu: 1e-3). 0 disables it.
      loss_agg: "token-mean" (verl/EasyR1 default) or "seq-mean-token-mean"; see `aggregate`.
      clip_ratio_dual: optional dual-clip constant c (> 1): for A < 0 the per-token loss is capped at
        ``-A c`` (verl/EasyR1 use 3.0 when enabled). None = off.
      normalizer: optional token count for "token-mean" (gradient accumulation over micro-batches).

    Returns:
      (loss scalar, metrics) with metrics (all stop-gradient, masked token means unless noted):
        pg_loss (aggregated like the loss), kl (mean k3), clip_fraction (tokens where the clipped term is
        the active one), ratio_mean, ppo_kl (mean of old_logp - logp), and clip_fraction_dual when enabled.
    """
    clip_high = clip_eps if clip_eps_high is None else clip_eps_high
    valid = mask.astype(jnp.float32) > 0
    zero = lambda x: jnp.where(valid, x.astype(jnp.float32), 0.0)  # noqa: E731
    logp = zero(logp)
    old_logp = zero(jax.lax.stop_gradient(old_logp))
    ref_logp = zero(jax.lax.stop_gradient(ref_logp))
    adv = jnp.where(valid, jax.lax.stop_gradient(advantages.astype(jnp.float32))[:, None], 0.0)

    log_ratio = jnp.clip(logp - old_logp, -_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)
    ratio = jnp.exp(log_ratio)
    pg_unclipped = -adv * ratio
    pg_clipped = -adv * jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_high)
    pg = jnp.maximum(pg_unclipped, pg_clipped)
    metrics = {"clip_fraction": masked_mean((pg_clipped > pg_unclipped).astype(jnp.float32), valid)}
    if clip_ratio_dual is not None:
        if clip_ratio_dual <= 1.0:
            raise ValueError(f"grpo_loss: clip_ratio_dual must be > 1, got {clip_ratio_dual}")
        cap = -adv * clip_ratio_dual
        metrics["clip_fraction_dual"] = masked_mean(((pg > cap) & (adv < 0)).astype(jnp.float32), valid)
        pg = jnp.where(adv < 0, jnp.minimum(pg, cap), pg)

    kl = k3_kl(logp, ref_logp)
    pg_loss = aggregate(pg, valid, loss_agg, normalizer)
    loss = pg_loss + kl_coef * aggregate(kl, valid, loss_agg, normalizer)
    metrics.update(
        pg_loss=pg_loss,
        kl=masked_mean(kl, valid),
        ratio_mean=masked_mean(ratio, valid),
        ppo_kl=masked_mean(-log_ratio, valid),
    )
    return loss, jax.tree.map(jax.lax.stop_gradient, metrics)
