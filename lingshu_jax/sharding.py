"""Logical axis names -> mesh axes. The model annotates; the experiment config's rules decide."""
from __future__ import annotations

from flax import linen as nn


def shard(x, names: tuple[str | None, ...]):
  """Sharding constraint on an activation by logical names; a no-op outside a mesh + rules context."""
  return nn.with_logical_constraint(x, names)
