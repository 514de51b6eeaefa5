"""`LingshuModel.generate` / `LingshuModel.generate_text`, defined here and bound in model/api.py by

from lingshu_jax.infer.model_methods import generate, generate_text  # noqa: E402  (in the class body)

model = lingshu_jax.from_pretrained(path)
model.generate(**processor_outputs, max_new_tokens=32)     -> {"tokens" [B, T], "lengths" [B]}
model.generate_text("What is shown?", images=["x.png"])     -> "..."
"""

from __future__ import annotations

from collections.abc import Sequence

import jax

from lingshu_jax.infer.generate import generate as _generate
from lingshu_jax.infer.generator import Generator
from lingshu_jax.infer.sampling import GREEDY, SamplingConfig
from lingshu_jax.processing.processor import is_conversation


def _generator(model):
    """The model's Generator, built once (processor from the model's source directory when it has one)."""
    gen = model.__dict__.get("_lingshu_generator")
    if gen is None or gen.params is not model.params:
        gen = Generator.from_model(model)
        model.__dict__["_lingshu_generator"] = gen
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
    gen = _generator(self)
    stop = gen.stop_token_ids if stop_token_ids is None else stop_token_ids
    pad = gen.pad_token_id if pad_token_id is None else pad_token_id
    return _generate(
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


def generate_text(
    self,
    messages,
    images: Sequence | None = None,
    max_new_tokens: int = 256,
    sampling: SamplingConfig | None = None,
    seed: int = 0,
):
    """A prompt string or a conversation -> the answer (str); a batch of them -> list[str]."""
    answers = _generator(self).generate(messages, images, max_new_tokens, sampling, seed)
    single = isinstance(messages, str) or is_conversation(messages)
    return answers[0] if single else answers
