"""Next-token selection from logits [B, V]: greedy, temperature, top-k and top-p (nucleus) sampling.

The filters follow transformers' logits warpers, applied in its order (temperature, top-k, top-p):
- top-k keeps every token whose logit is >= the k-th largest (ties at the k-th value are kept);
- top-p keeps the smallest set of most likely tokens whose probability reaches p (the token that crosses
  p is kept; at least one token always stays).
Removed tokens get -inf. Everything is jit-friendly; `SamplingConfig` is hashable (a static argument).

Keys: one PRNG key for the whole batch, or one key per row ([B] key array). With per-row keys a row's
samples depend on its own key and logits only, not on which batch (or host) it was drawn in.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

NEG_INF = -jnp.inf


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """temperature 0 = greedy (top_k / top_p ignored); top_k 0 = off; top_p 1.0 = off."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"SamplingConfig.temperature={self.temperature}: must be >= 0 (0 = greedy)")
        if self.top_k < 0:
            raise ValueError(f"SamplingConfig.top_k={self.top_k}: must be >= 0 (0 = off)")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"SamplingConfig.top_p={self.top_p}: must be in (0, 1] (1 = off)")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


GREEDY = SamplingConfig()


def top_k_filter(logits, k: int):
    """logits [..., V] -> same shape, logits below the k-th largest set to -inf (k <= 0 or k >= V: no-op)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = jax.lax.top_k(logits, k)[0][..., -1:]
    return jnp.where(logits < kth, NEG_INF, logits)


def top_p_filter(logits, p: float):
    """logits [..., V] -> same shape, outside the top-p nucleus set to -inf (p >= 1: no-op).

    A token stays when the probability mass of the tokens ranked strictly above it is < p, so the
    token crossing p stays and the most likely token always stays. Tokens tied with the last kept value
    are kept too (as a threshold on the logit value).
    """
    if p >= 1.0:
        return logits
    sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]  # descending
    probs = jax.nn.softmax(sorted_logits.astype(jnp.float32), axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    keep = mass_before < p
    keep = keep.at[..., 0].set(True)
    n_keep = keep.sum(axis=-1, keepdims=True)
    threshold = jnp.take_along_axis(sorted_logits, n_keep - 1, axis=-1)
    return jnp.where(logits < threshold, NEG_INF, logits)


def filter_logits(logits, config: SamplingConfig):
    """Temperature, then top-k, then top-p, in float32: [B, V] -> [B, V] (-inf outside the kept set)."""
    logits = logits.astype(jnp.float32)
    if config.greedy:
        return logits
    logits = logits / config.temperature
    logits = top_k_filter(logits, config.top_k)
    return top_p_filter(logits, config.top_p)


def fold_in(rng, data):
    """`jax.random.fold_in` of one key, or of each key of a [B] key array (per-row keys)."""
    if rng.ndim == 0:
        return jax.random.fold_in(rng, data)
    return jax.vmap(lambda k: jax.random.fold_in(k, data))(rng)


def sample(logits, rng, config: SamplingConfig = GREEDY):
    """logits [B, V], a PRNG key or [B] per-row keys -> next tokens [B] int32 (argmax when greedy; rng
    unused then)."""
    if config.greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    filtered = filter_logits(logits, config)
    if rng.ndim == 0:
        return jax.random.categorical(rng, filtered, axis=-1).astype(jnp.int32)
    return jax.vmap(lambda k, row: jax.random.categorical(k, row))(rng, filtered).astype(jnp.int32)
