"""Chat rendering vs transformers' apply_chat_template, template lookup, assistant spans for training."""

import json

import pytest

from lingshu_jax.processing.chat import (
    DEFAULT_SYSTEM_PROMPT,
    QWEN25_VL_CHAT_TEMPLATE,
    ChatTemplate,
    find_chat_template,
)

CONVERSATIONS = {
    "text_only_string": [{"role": "user", "content": "What is a pneumothorax?"}],
    "image_and_text": [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]}
    ],
    "system_given": [
        {"role": "system", "content": "You are a radiologist."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
    ],
    "multi_turn_two_images": [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Compare."}],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "The second shows an effusion."}]},
        {"role": "user", "content": "Which side?"},
        {"role": "assistant", "content": "Left."},
    ],
    "video": [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]}],
}


@pytest.fixture(scope="module")
def hf_tokenizer(small_tok_dir):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(small_tok_dir)


@pytest.mark.parametrize("name", list(CONVERSATIONS))
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_render_equals_transformers_apply_chat_template(hf_tokenizer, name, add_generation_prompt):
    messages = CONVERSATIONS[name]
    ours = ChatTemplate().render(messages, add_generation_prompt=add_generation_prompt)
    ref = hf_tokenizer.apply_chat_template(
        messages, add_generation_prompt=add_generation_prompt, tokenize=False
    )
    assert ours == ref


def test_add_vision_id_and_default_system_prompt(hf_tokenizer):
    messages = CONVERSATIONS["multi_turn_two_images"]
    ours = ChatTemplate().render(messages, add_vision_id=True)
    assert ours == hf_tokenizer.apply_chat_template(messages, tokenize=False, add_vision_id=True)
    assert "Picture 2: <|vision_start|><|image_pad|><|vision_end|>" in ours
    assert ours.startswith(f"<|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n")
    prompt = ChatTemplate().render(CONVERSATIONS["image_and_text"], add_generation_prompt=True)
    assert prompt.endswith("Describe.<|im_end|>\n<|im_start|>assistant\n")


def test_template_lookup_prefers_processor_files_then_tokenizer_config(tmp_path):
    assert find_chat_template(str(tmp_path)) is None
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": "T"}))
    assert find_chat_template(str(tmp_path)) == "T"
    (tmp_path / "chat_template.jinja").write_text("J")
    assert find_chat_template(str(tmp_path)) == "J"
    (tmp_path / "chat_template.json").write_text(json.dumps({"chat_template": QWEN25_VL_CHAT_TEMPLATE}))
    assert ChatTemplate.from_pretrained(str(tmp_path)).template == QWEN25_VL_CHAT_TEMPLATE


def test_assistant_spans_cover_each_reply_and_its_im_end_only():
    messages = CONVERSATIONS["multi_turn_two_images"]
    text, spans = ChatTemplate().render_with_assistant_spans(messages)
    assert [text[s:e] for s, e in spans] == ["The second shows an effusion.<|im_end|>", "Left.<|im_end|>"]
    assert text[: spans[0][0]].endswith("<|im_start|>assistant\n")


def test_assistant_first_conversation_cannot_be_spanned():
    messages = [{"role": "assistant", "content": "Hi"}, {"role": "user", "content": "Yo"}]
    with pytest.raises(ValueError, match="assistant"):
        ChatTemplate().render_with_assistant_spans(messages)


def test_malformed_messages_raise():
    with pytest.raises(ValueError, match="role"):
        ChatTemplate().render([{"content": "x"}])
