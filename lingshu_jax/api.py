"""The public model object: `lingshu_jax.from_pretrained(path)` -> `LingshuModel`.

`model(input_ids=..., pixel_values=..., image_grid_thw=...)` takes numpy arrays exactly as transformers'
Qwen2.5-VL processor (or ours) returns them and gives `.logits` [batch, seq, vocab]. Host-side
preparation (M-RoPE ids, window order of patches) happens here; the forward itself is jitted.

  model.generate(**processor_outputs, max_new_tokens=32)     -> {"tokens" [B, T], "lengths" [B]}
  model.generate_text("What is shown?", images=["x.png"])     -> "..."

This module is the facade above the layers it joins (model, convert, infer; see docs/DESIGN.md "Layers"):
nothing in the library below it imports it.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Sequence

import jax
import numpy as np

from lingshu_jax.convert.jax_to_hf import jax_to_hf
from lingshu_jax.convert.load import load_model
from lingshu_jax.infer.generate import generate_ids
from lingshu_jax.infer.generator import Generator
from lingshu_jax.infer.sampling import GREEDY, SamplingConfig
from lingshu_jax.model.config import ModelConfig
from lingshu_jax.model.vlm import Qwen25VL, prepare_inputs
from lingshu_jax.processing.processor import is_conversation


def _signature_of(fn, returns: str) -> inspect.Signature:
    """`fn`'s signature with another return annotation: for a function here that forwards its arguments to
    `fn`, so that `help()` and editors show the parameters, written once (in `fn`)."""
    return inspect.signature(fn).replace(return_annotation=returns)


@dataclasses.dataclass
class ModelOutput:
    logits: jax.Array  # [batch, seq, vocab]


class LingshuModel:
    """A Qwen2.5-VL / Lingshu model: config + parameter tree + jitted forward (+ generate / generate_text)."""

    def __init__(self, config: ModelConfig, params, source_dir: str | None = None):
        self.config = config
        self.params = params
        self.module = Qwen25VL(config)
        self.source_dir = source_dir

    @functools.cached_property
    def _forward(self):
        return jax.jit(lambda params, batch: self.module.apply({"params": params}, batch)[0])

    def logits(self, batch: dict) -> jax.Array:
        """The jitted forward on a prepared batch (`prepare`) -> logits [B, S, V]."""
        return self._forward(self.params, batch)

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
        return ModelOutput(logits=self.logits(batch))

    def save_pretrained(
        self, out_dir: str, source_hf_dir: str | None = None, dtype: str | None = None
    ) -> str:
        """Writes a Hugging Face directory (safetensors shards, config, tokenizer/processor files)."""
        return jax_to_hf(
            self.params, self.config, out_dir, source_hf_dir=source_hf_dir or self.source_dir, dtype=dtype
        )

    def generator(self) -> Generator:
        """The model's `infer.Generator`, built once (processor from the model's source directory when it
        has one) and rebuilt when `params` is replaced."""
        gen = self.__dict__.get("_generator")
        if gen is None or gen.params is not self.params:
            gen = self.__dict__["_generator"] = Generator.from_model(self)
        return gen

    def generate(
        self,
        max_new_tokens: int = 256,
        sampling: SamplingConfig | None = None,
        seed: int = 0,
        stop_token_ids: Sequence[int] | None = None,
        pad_token_id: int | None = None,
        **inputs,
    ):
        """Processor outputs (input_ids, attention_mask, pixel_values, image_grid_thw, ...) -> token ids.

        Greedy by default. Returns {"tokens": [B, T_new] int32 (pad after the stop token), "lengths": [B]}.
        """
        gen = self.generator()
        stop = gen.stop_token_ids if stop_token_ids is None else stop_token_ids
        pad = gen.pad_token_id if pad_token_id is None else pad_token_id
        return generate_ids(
            self.config,
            self.params,
            inputs,
            max_new_tokens,
            sampling or GREEDY,
            jax.random.key(seed),
            stop,
            pad,
            buckets=gen.buckets,
        )

    def generate_text(self, messages, *args, **kwargs):
        """`infer.Generator.generate_text` (its arguments: images, max_new_tokens, sampling, seed) on this
        model, except that a prompt string or a conversation gives its answer (str); a batch of them gives
        list[str]."""
        answers = self.generator().generate_text(messages, *args, **kwargs)
        single = isinstance(messages, str) or is_conversation(messages)
        return answers[0] if single else answers

    generate_text.__signature__ = _signature_of(Generator.generate_text, returns="str | list[str]")


def _np(x):
    if x is None:
        return None
    if hasattr(x, "detach"):  # torch tensors from transformers' processor
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def from_pretrained(path: str, *args, **kwargs) -> LingshuModel:
    """Loads a Hugging Face Qwen2.5-VL/Lingshu directory or one of our converted checkpoints as a
    `LingshuModel`. The arguments are `convert.load.load_model`'s (dtype, param_dtype, shardings, mesh,
    rules, ModelConfig policy fields; documented there)."""
    return LingshuModel(*load_model(path, *args, **kwargs))


from_pretrained.__signature__ = _signature_of(load_model, returns="LingshuModel")
