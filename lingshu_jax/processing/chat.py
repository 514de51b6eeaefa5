"""Qwen2.5-VL ChatML rendering from the checkpoint's own chat template, as transformers renders it.

The template is looked up in the model directory in transformers' processor order (processor_config.json
`chat_template`, chat_template.json, chat_template.jinja, then tokenizer_config.json `chat_template`) and
rendered with jinja2's ImmutableSandboxedEnvironment(trim_blocks, lstrip_blocks), the same environment
transformers builds. Without a template the built-in Qwen2.5-VL one is used: ChatML with the default system
prompt "You are a helpful assistant.", content parts {"type": "image"|"video"|"text"}, each image as
`<|vision_start|><|image_pad|><|vision_end|>`.

For training, `render_with_assistant_spans` also returns the character span of every assistant turn:
its content plus the closing `<|im_end|>` (not the `<|im_start|>assistant\n` header, not the newline after
`<|im_end|>`). Spans come from rendering prefixes of the conversation, so they hold for any template that
renders a conversation as the concatenation of its turns.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from functools import lru_cache

import numpy as np

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."

# chat_template.json of Qwen2.5-VL-*-Instruct (Lingshu checkpoints ship the same).
QWEN25_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _load_json(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: invalid JSON ({e})") from e


def find_chat_template(model_dir: str) -> str | None:
    """The chat template string stored in model_dir, in transformers' processor lookup order, or None."""
    for name, key in (
        ("processor_config.json", "chat_template"),
        ("chat_template.json", "chat_template"),
        ("chat_template.jinja", None),
        ("tokenizer_config.json", "chat_template"),
    ):
        path = os.path.join(model_dir, name)
        if not os.path.isfile(path):
            continue
        if key is None:
            with open(path, encoding="utf-8") as f:
                return f.read()
        template = _load_json(path).get(key)
        if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        if isinstance(template, dict):
            template = template.get("default")
        if isinstance(template, str):
            return template
    return None


@lru_cache(maxsize=16)
def _compile(template: str):
    """jinja2 template in the environment transformers uses for chat templates."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


def _check_messages(messages) -> None:
    if not isinstance(messages, (list, tuple)):
        raise ValueError(f"a conversation must be a list of messages, got {type(messages).__name__}")  # noqa: TRY004
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f"message {i} must be a dict with 'role' and 'content', got {m!r:.200}")
        if not isinstance(m["content"], (str, list, tuple)):
            raise ValueError(f"message {i}: content must be a string or a list of parts")  # noqa: TRY004


class ChatTemplate:
    """Renders conversations with a jinja chat template (default: Qwen2.5-VL's)."""

    def __init__(self, template: str | None = None):
        self.template = template or QWEN25_VL_CHAT_TEMPLATE

    @classmethod
    def from_pretrained(cls, model_dir: str) -> ChatTemplate:
        return cls(find_chat_template(model_dir))

    def render(self, messages, add_generation_prompt: bool = False, **kwargs) -> str:
        """One conversation (list of {"role", "content"}) -> prompt text."""
        _check_messages(messages)
        return _compile(self.template).render(
            messages=list(messages),
            add_generation_prompt=add_generation_prompt,
            tools=None,
            documents=None,
            **kwargs,
        )

    def render_with_assistant_spans(
        self, messages, add_generation_prompt: bool = False, **kwargs
    ) -> tuple[str, list[tuple[int, int]]]:
        """-> (text, [(start, end)] character spans of assistant turns: content + closing end token)."""
        text = self.render(messages, add_generation_prompt=add_generation_prompt, **kwargs)
        spans = []
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            head = self.render(messages[:i], add_generation_prompt=True, **kwargs)
            if i == len(messages) - 1 and not add_generation_prompt:
                upto = text  # the same render
            else:
                upto = self.render(messages[: i + 1], add_generation_prompt=False, **kwargs)
            if not (upto.startswith(head) and text.startswith(upto)):
                raise ValueError(
                    f"chat template does not render message {i} (assistant) as a continuation of the earlier "
                    "turns; cannot locate the assistant span (is the first message an assistant turn?)"
                )
            end = len(upto.rstrip())
            spans.append((len(head), end))
        return text, spans


def token_mask_from_spans(offsets, spans) -> np.ndarray:
    """Token char offsets [(start, end)] x char spans -> bool [S]: token starts inside a span.

    A token that starts inside a span is in it (only a merged whitespace token can straddle the start
    boundary; it stays out, with the header it began in).
    """
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    starts, ends = offsets[:, 0], offsets[:, 1]
    mask = np.zeros(len(offsets), dtype=bool)
    for start, end in spans:
        mask |= (starts >= start) & (starts < end) & (ends > starts)
    return mask
