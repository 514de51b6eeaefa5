"""`Generator`: model + processor + compiled programs, from conversations to answers.

    gen = Generator.from_pretrained("path/to/Lingshu-7B", dtype="bfloat16")
    gen.generate_text("What is shown?", images=["scan.dcm"])                 -> ["..."]
    gen.generate_text([conv_a, conv_b], max_new_tokens=128)                 -> ["...", "..."]
    reply, conv = gen.chat(conv)                                        (conv + the assistant's reply)

Inputs accepted by `generate_text`: a prompt string (one user turn; `images=` attaches images before the
text), one conversation (list of message dicts), a batch of conversations, a list of prompt strings, or
processor outputs (a dict with `input_ids`). Compiled programs are cached (per shape bucket and
max_new_tokens), so repeated calls with similar shapes do not recompile.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

from lingshu_jax.convert.load import load_model
from lingshu_jax.infer.generate import (
    DEFAULT_BUCKETS,
    Buckets,
    generate_ids,
    generation_rules,
    place_params,
)
from lingshu_jax.infer.sampling import GREEDY, SamplingConfig
from lingshu_jax.model.config import ModelConfig
from lingshu_jax.processing.processor import Processor, is_conversation


def user_turn(text: str, images: Sequence = ()) -> dict:
    """A user message: the images (paths, PIL images or arrays) first, then the text."""
    content = [{"type": "image", "image": im} for im in images]
    content.append({"type": "text", "text": text})
    return {"role": "user", "content": content}


def as_conversations(messages, images: Sequence | None = None) -> list[list[dict]]:
    """A prompt string / conversation / batch of either -> a list of conversations."""
    if isinstance(messages, str):
        return [[user_turn(messages, images or ())]]
    if images:
        raise ValueError("images= is only accepted with a prompt string; put image parts in the messages")
    if is_conversation(messages):
        return [list(messages)]
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError(
            f"expected a prompt, a conversation or a non-empty batch of them, got {messages!r:.200}"
        )
    return [[user_turn(m)] if isinstance(m, str) else list(m) for m in messages]


class Generator:
    """Holds config, parameters (placed on `mesh` when given), the processor and generation defaults."""

    def __init__(
        self,
        config: ModelConfig,
        params,
        processor: Processor | None = None,
        *,
        mesh=None,
        rules=None,
        stop_token_ids: Sequence[int] | None = None,
        pad_token_id: int | None = None,
        buckets: Buckets = DEFAULT_BUCKETS,
    ):
        self.config = config
        self.processor = processor
        self.mesh = mesh
        self.rules = generation_rules(rules) if mesh is not None else None
        self.params = params if mesh is None else place_params(config, params, mesh, self.rules)
        tok = processor.tokenizer if processor is not None else None
        if stop_token_ids is None:
            stop_token_ids = tok.eos_token_ids if tok is not None else config.eos_token_ids
        self.stop_token_ids = tuple(int(t) for t in stop_token_ids)
        if pad_token_id is None and tok is not None:
            pad_token_id = tok.pad_token_id
        self.pad_token_id = pad_token_id
        self.buckets = buckets

    @classmethod
    def from_pretrained(
        cls,
        path: str,
        *,
        dtype: str = "float32",
        param_dtype: str | None = None,
        mesh=None,
        rules=None,
        **kwargs,
    ) -> Generator:
        """Loads a Hugging Face / converted checkpoint directory and its processor files."""
        config, params, source = load_model(path, dtype=dtype, param_dtype=param_dtype)
        processor = kwargs.pop("processor", None) or (Processor.from_pretrained(source) if source else None)
        return cls(config, params, processor, mesh=mesh, rules=rules, **kwargs)

    @classmethod
    def from_model(cls, model, processor: Processor | None = None, **kwargs) -> Generator:
        """From a `LingshuModel`; the processor is read from the model's source directory by default."""
        if processor is None and model.source_dir is not None:
            processor = Processor.from_pretrained(model.source_dir)
        return cls(model.config, model.params, processor, **kwargs)

    def require_processor(self) -> Processor:
        if self.processor is None:
            raise ValueError(
                "this Generator has no processor (tokenizer files); pass processor outputs or "
                "build it with Generator.from_pretrained / processor="
            )
        return self.processor

    def encode(self, messages, images: Sequence | None = None) -> dict[str, np.ndarray]:
        """Prompt(s) / conversation(s) -> processor outputs (generation prompt added, left padding)."""
        return self.require_processor()(as_conversations(messages, images), add_generation_prompt=True)

    def generate_ids(
        self,
        inputs: dict,
        max_new_tokens: int = 256,
        sampling: SamplingConfig = GREEDY,
        seed: int = 0,
        **kwargs,
    ) -> dict[str, np.ndarray]:
        """Processor outputs -> {"tokens" [B, T_new], "lengths" [B]} (see `infer.generate.generate_ids`)."""
        return generate_ids(
            self.config,
            self.params,
            inputs,
            max_new_tokens,
            sampling,
            jax.random.key(seed),
            self.stop_token_ids,
            self.pad_token_id,
            mesh=self.mesh,
            rules=self.rules,
            buckets=self.buckets,
            **kwargs,
        )

    def decode(self, out: dict) -> list[str]:
        """Generated ids -> texts (stop and special tokens dropped)."""
        proc = self.require_processor()
        return [
            proc.decode(row[:n], skip_special_tokens=True) for row, n in zip(out["tokens"], out["lengths"])
        ]

    def generate_text(
        self,
        messages,
        images: Sequence | None = None,
        max_new_tokens: int = 256,
        sampling: SamplingConfig | None = None,
        seed: int = 0,
    ) -> list[str]:
        """Prompt(s), conversation(s) or processor outputs -> one answer per row."""
        inputs = messages if isinstance(messages, dict) else self.encode(messages, images)
        return self.decode(self.generate_ids(inputs, max_new_tokens, sampling or GREEDY, seed))

    def chat(
        self,
        messages: list[dict],
        max_new_tokens: int = 256,
        sampling: SamplingConfig | None = None,
        seed: int = 0,
    ) -> tuple[str, list[dict]]:
        """One conversation ending in a user turn -> (reply, the conversation with the reply appended)."""
        if not is_conversation(messages) or not messages or messages[-1].get("role") != "user":
            raise ValueError("chat() takes one conversation (list of message dicts) ending with a user turn")
        reply = self.generate_text(messages, max_new_tokens=max_new_tokens, sampling=sampling, seed=seed)[0]
        return reply, [*messages, {"role": "assistant", "content": reply}]
