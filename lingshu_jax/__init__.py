"""lingshu-jax: Lingshu / Qwen2.5-VL medical vision-language models in JAX/Flax.

Public API:
  from_pretrained(path, dtype=...) -> LingshuModel   HF directory or lingshu-jax checkpoint
  LingshuModel(...)(input_ids=, pixel_values=, image_grid_thw=, ...) -> .logits [batch, seq, vocab]
  Processor.from_pretrained(path)(messages, images=...) -> model inputs (numpy)
  ModelConfig, preset(name)                          model configurations (HF config.json <-> ours)
"""

from lingshu_jax.model.api import LingshuModel, ModelOutput, from_pretrained
from lingshu_jax.model.config import PRESETS, ModelConfig, preset
from lingshu_jax.processing import Processor

__all__ = ["from_pretrained", "LingshuModel", "ModelOutput", "Processor", "ModelConfig", "preset", "PRESETS"]
__version__ = "0.1.0"
