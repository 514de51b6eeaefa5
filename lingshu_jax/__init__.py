"""lingshu-jax: Lingshu / Qwen2.5-VL medical vision-language models in JAX/Flax.

Public API (imported lazily, so `lingshu_jax.evals` and the scoring CLI do not load JAX):
  from_pretrained(path, dtype=...) -> LingshuModel   HF directory or lingshu-jax checkpoint
  LingshuModel(...)(input_ids=, pixel_values=, image_grid_thw=, ...) -> .logits [batch, seq, vocab]
  Processor.from_pretrained(path)(messages, images=...) -> model inputs (numpy)
  ModelConfig, preset(name)                          model configurations (HF config.json <-> ours)
"""

import importlib

_EXPORTS = {
    "from_pretrained": "lingshu_jax.api",
    "LingshuModel": "lingshu_jax.api",
    "ModelOutput": "lingshu_jax.api",
    "ModelConfig": "lingshu_jax.model.config",
    "preset": "lingshu_jax.model.config",
    "PRESETS": "lingshu_jax.model.config",
    "Processor": "lingshu_jax.processing",
}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lingshu_jax' has no attribute {name!r}")
