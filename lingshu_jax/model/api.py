"""The public model object: `lingshu_jax.from_pretrained(path)` -> `LingshuModel`.

`model(input_ids=..., pixel_values=..., image_grid_thw=...)` takes numpy arrays exactly as transformers'
Qwen2.5-VL processor (or ours) returns them and gives `.logits` [batch, seq, vocab]. Host-side
preparation (M-RoPE ids, window order of patches) happens here; the forward itself is jitted.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import jax
import numpy as np

from lingshu_jax.model.config import ModelConfig
from lingshu_jax.model.vlm import Qwen25VL, prepare_inputs


@dataclasses.dataclass
class ModelOutput:
    logits: jax.Array  # [batch, seq, vocab]


class LingshuModel:
    """A Qwen2.5-VL / Lingshu model: config + parameter tree + jitted forward (+ generate / generate_text)."""

    from lingshu_jax.infer.model_methods import generate, generate_text  # noqa: E402  KV-cache generation

    def __init__(self, config: ModelConfig, params, source_dir: str | None = None):
        self.config = config
        self.params = params
        self.module = Qwen25VL(config)
        self.source_dir = source_dir

    @functools.cached_property
    def _forward(self):
        return jax.jit(lambda params, batch: self.module.apply({"params": params}, batch)[0])

    def prepare(self, **inputs) -> dict[str, np.ndarray]:
        """Processor outputs -> the model's batch dict (numpy), see docs/DESIGN.md."""
        inputs.pop("mm_token_type_ids", None)
        return prepare_inputs(self.config, **inputs)

    def __call__(
        self,
        input_ids,
        pixel_values=None,
        image_grid_thw=None,
        attention_mask=None,
        pixel_values_videos=None,
        video_grid_thw=None,
        second_per_grid_ts=None,
        **unused,
    ) -> ModelOutput:
        unused.pop("mm_token_type_ids", None)
        if unused:
            raise ValueError(f"unexpected model inputs: {sorted(unused)}")
        batch = prepare_inputs(
            self.config,
            _np(input_ids),
            _np(attention_mask),
            _np(pixel_values),
            _np(image_grid_thw),
            _np(pixel_values_videos),
            _np(video_grid_thw),
            _np(second_per_grid_ts),
        )
        return ModelOutput(logits=self._forward(self.params, batch))

    def save_pretrained(
        self, out_dir: str, source_hf_dir: str | None = None, dtype: str | None = None
    ) -> str:
        """Writes a Hugging Face directory (safetensors shards, config, tokenizer/processor files)."""
        from lingshu_jax.convert.jax_to_hf import jax_to_hf

        return jax_to_hf(
            self.params, self.config, out_dir, source_hf_dir=source_hf_dir or self.source_dir, dtype=dtype
        )


def _np(x):
    if x is None:
        return None
    if hasattr(x, "detach"):  # torch tensors from transformers' processor
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def from_pretrained(
    path: str,
    dtype: str = "float32",
    param_dtype: str | None = None,
    shardings=None,
    mesh=None,
    rules=None,
    **policy,
) -> LingshuModel:
    """Loads a Hugging Face Qwen2.5-VL/Lingshu directory or one of our converted checkpoints.

    dtype: compute dtype; param_dtype: storage dtype (default: same as dtype).
    mesh (+ rules, default `sharding.DEFAULT_RULES`): place every parameter straight onto the mesh with
    the model's logical shardings; each device reads only its slice. `shardings`: an explicit pytree of
    NamedSharding instead.
    """
    from lingshu_jax.convert.load import load_any, model_config_from

    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such model directory or checkpoint")
    if mesh is not None and shardings is None:
        from lingshu_jax import sharding
        from lingshu_jax.model.vlm import abstract_params

        boxed = abstract_params(model_config_from(path, param_dtype=param_dtype or dtype), boxed=True)
        shardings = sharding.param_shardings(boxed, mesh, rules or sharding.DEFAULT_RULES)
    config, params, source = load_any(path, dtype=param_dtype or dtype, shardings=shardings)
    config = config.replace(dtype=dtype, param_dtype=param_dtype or dtype, **policy)
    return LingshuModel(config, params, source_dir=source)
