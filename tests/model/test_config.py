"""ModelConfig validation: special token ids must index the vocabulary; presets' ids follow the cut Qwen
tokenizer's numbering."""

import dataclasses

import pytest

from lingshu_jax.model.config import (
    BENCH_TOKENIZER_RANKS,
    PRESETS,
    QWEN_SPECIAL_TOKENS,
    TINY_TOKENIZER_RANKS,
    ModelConfig,
    TextConfig,
    preset,
    qwen_special_token_ids,
)
from lingshu_jax.testing.tokenizer import FULL_VOCAB, SPECIAL_TOKENS


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_keeps_its_special_ids_inside_the_vocabulary(name):
    cfg = preset(name)
    assert max(cfg.special_token_ids().values()) < cfg.text.vocab_size


def test_special_id_numbering_matches_the_tokenizer_builder():
    assert QWEN_SPECIAL_TOKENS == len(SPECIAL_TOKENS)
    offset = {content: i for i, (content, _) in enumerate(SPECIAL_TOKENS)}
    want = {
        "bos_token_id": "<|endoftext|>",
        "eos_token_id": "<|im_end|>",
        "vision_start_token_id": "<|vision_start|>",
        "vision_end_token_id": "<|vision_end|>",
        "image_token_id": "<|image_pad|>",
        "video_token_id": "<|video_pad|>",
    }
    for ranks in (TINY_TOKENIZER_RANKS, BENCH_TOKENIZER_RANKS, FULL_VOCAB):
        ids = qwen_special_token_ids(ranks)
        assert ids == {k: ranks + offset[tok] for k, tok in want.items()}
    qwen = ModelConfig()  # Qwen2.5-VL's own ids
    assert {k: getattr(qwen, k) for k in want} == qwen_special_token_ids(FULL_VOCAB)


def test_bench_100m_ids_are_the_last_rows_of_its_vocabulary():
    cfg = preset("bench-100m")
    assert cfg.text.vocab_size == BENCH_TOKENIZER_RANKS + QWEN_SPECIAL_TOKENS == 32768
    assert cfg.image_token_id == 32758 and cfg.vision_start_token_id == 32755 and cfg.eos_token_id == 32748


def test_small_vocabulary_with_qwen_ids_is_rejected_naming_the_ids():
    with pytest.raises(ValueError, match=r"outside the vocabulary \[0, 32768\).*image_token_id=151655"):
        ModelConfig(text=dataclasses.replace(TextConfig(), vocab_size=32768))
    hf = dict(PRESETS["bench-100m"])
    for k in qwen_special_token_ids(0):
        hf.pop(k)  # a config.json without ids: Qwen's defaults, outside 32768 rows
    with pytest.raises(ValueError, match="video_token_id=151656"):
        ModelConfig.from_hf_dict(hf)


def test_each_eos_id_is_checked():
    cfg = preset("tiny")
    assert cfg.replace(eos_token_id=(1002, 1000)).eos_token_ids == (1002, 1000)
    with pytest.raises(ValueError, match=r"eos_token_id\[1\]=1024"):
        cfg.replace(eos_token_id=(1002, 1024))
    with pytest.raises(ValueError, match="image_token_id=-1"):
        cfg.replace(image_token_id=-1)
