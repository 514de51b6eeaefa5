"""HF -> JAX -> HF is bit exact (keys, dtypes, bytes), and transformers loads what we export."""

import json
import os

import ml_dtypes
import numpy as np
import pytest
import torch

from lingshu_jax.convert import hf_to_jax, jax_to_hf, keymap
from lingshu_jax.convert.checkpoint import HF_ASSET_FILES
from lingshu_jax.model.config import ModelConfig, preset
from tests.convert.helpers import assert_bit_exact, read_all, rewrite


@pytest.mark.parametrize("name,dtype", [("tiny", "float32"), ("tiny-tied", "float32"), ("tiny", "bfloat16")])
def test_hf_to_orbax_to_hf_is_bit_exact(hf_checkpoint, tmp_path, name, dtype):
    hf_dir, _ = hf_checkpoint(name, dtype)
    hf_to_jax(hf_dir, out_dir=str(tmp_path / "jax"), return_params=False)
    jax_to_hf(str(tmp_path / "jax"), None, str(tmp_path / "hf"))
    assert_bit_exact(read_all(hf_dir), read_all(str(tmp_path / "hf")))


def test_in_memory_params_to_sharded_hf_is_bit_exact_with_index(hf_checkpoint, tmp_path):
    hf_dir, _ = hf_checkpoint("tiny")
    params = hf_to_jax(hf_dir)
    files = jax_to_hf(params, preset("tiny"), str(tmp_path), max_shard_size=200_000)
    with open(tmp_path / "model.safetensors.index.json") as f:
        index = json.load(f)
    tensors = read_all(str(tmp_path))
    assert len(files) > 3
    for f in files:  # <= max_shard_size of data, or one tensor that is larger alone
        keys = [k for k, v in index["weight_map"].items() if v == os.path.basename(f)]
        assert len(keys) == 1 or sum(tensors[k].nbytes for k in keys) <= 200_000, f
    assert index["metadata"]["total_size"] == sum(t.nbytes for t in tensors.values())
    assert sorted(index["weight_map"]) == sorted(tensors)
    assert_bit_exact(read_all(hf_dir), tensors)


def test_params_have_the_design_layout_and_values(hf_checkpoint):
    hf_dir, model = hf_checkpoint("tiny")
    params = hf_to_jax(hf_dir)
    sd = {keymap.normalize_hf_key(k): v.numpy() for k, v in model.state_dict().items()}
    np.testing.assert_array_equal(
        params["visual"]["patch_embed"]["kernel"], sd["visual.patch_embed.proj.weight"].reshape(32, -1).T
    )
    np.testing.assert_array_equal(
        params["model"]["layers"]["self_attn"]["q_proj"]["kernel"][1],
        sd["model.layers.1.self_attn.q_proj.weight"].T,
    )
    np.testing.assert_array_equal(
        params["visual"]["blocks"]["attn"]["qkv"]["bias"][2], sd["visual.blocks.2.attn.qkv.bias"]
    )
    np.testing.assert_array_equal(params["lm_head"]["kernel"], sd["lm_head.weight"].T)


@pytest.mark.parametrize("name,dtype", [("tiny", "float32"), ("tiny-tied", "bfloat16")])
def test_export_loads_in_transformers_with_identical_state_dict(hf_checkpoint, tmp_path, name, dtype):
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    hf_dir, model = hf_checkpoint(name, dtype)
    hf_to_jax(hf_dir, out_dir=str(tmp_path / "jax"), return_params=False)
    jax_to_hf(str(tmp_path / "jax"), None, str(tmp_path / "hf"))
    loaded = AutoModelForImageTextToText.from_pretrained(str(tmp_path / "hf"), dtype=getattr(torch, dtype))
    want, got = model.state_dict(), loaded.state_dict()
    assert sorted(want) == sorted(got)
    for k in want:
        assert got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]), k
    assert loaded.config.tie_word_embeddings == (name == "tiny-tied")
    for f in ("tokenizer.json", "preprocessor_config.json", "chat_template.jinja", "generation_config.json"):
        assert os.path.exists(tmp_path / "jax" / "hf_assets" / f) and os.path.exists(tmp_path / "hf" / f), f
    text = "<|im_start|>user\nHello world<|im_end|>"
    assert (
        AutoTokenizer.from_pretrained(str(tmp_path / "hf"))(text).input_ids
        == AutoTokenizer.from_pretrained(hf_dir)(text).input_ids
    )


def test_tied_export_omits_lm_head_like_transformers(hf_checkpoint, tmp_path):
    hf_dir, _ = hf_checkpoint("tiny-tied")
    assert "lm_head.weight" not in read_all(hf_dir)  # what save_pretrained writes
    jax_to_hf(hf_to_jax(hf_dir), preset("tiny-tied"), str(tmp_path))
    assert "lm_head.weight" not in read_all(str(tmp_path))


def test_tied_checkpoint_with_lm_head_is_accepted(hf_checkpoint, tmp_path):
    hf_dir, _ = hf_checkpoint("tiny-tied")
    tensors = read_all(hf_dir)
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"]
    params = hf_to_jax(rewrite(hf_dir, str(tmp_path), tensors))
    assert "lm_head" not in params


def test_in_memory_layout_of_transformers_5_converts_like_the_saved_layout(hf_checkpoint, tmp_path):
    hf_dir, model = hf_checkpoint("tiny")
    in_memory = {
        k: v.numpy() for k, v in model.state_dict().items()
    }  # model.language_model.*, model.visual.*
    ours = hf_to_jax(rewrite(hf_dir, str(tmp_path / "mem"), in_memory))
    jax_to_hf(ours, preset("tiny"), str(tmp_path / "hf"))
    assert_bit_exact(read_all(hf_dir), read_all(str(tmp_path / "hf")))


def test_dtype_cast_matches_torch_rounding(hf_checkpoint, tmp_path):
    hf_dir, model = hf_checkpoint("tiny")
    params = hf_to_jax(hf_dir, dtype="bfloat16")
    assert params["model"]["embed_tokens"]["embedding"].dtype == ml_dtypes.bfloat16
    jax_to_hf(params, preset("tiny"), str(tmp_path))
    got = read_all(str(tmp_path))
    want = {
        k: v.to(torch.bfloat16).view(torch.int16).numpy()
        for k, v in model.to(torch.float32).state_dict().items()
    }
    for k, v in got.items():
        hf_name = (
            k.replace("model.", "model.language_model.", 1)
            if k.startswith("model.")
            else k.replace("visual.", "model.visual.", 1)
            if k.startswith("visual.")
            else k
        )
        assert v.dtype == ml_dtypes.bfloat16 and v.view(np.int16).tobytes() == want[hf_name].tobytes(), k
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["text_config"]["dtype"] == "bfloat16"
    assert ModelConfig.from_pretrained(str(tmp_path)) == preset("tiny")


def test_export_without_source_writes_generation_config_from_config(hf_checkpoint, tmp_path):
    hf_dir, _ = hf_checkpoint("tiny")
    jax_to_hf(hf_to_jax(hf_dir), preset("tiny"), str(tmp_path))
    with open(tmp_path / "generation_config.json") as f:
        gen = json.load(f)
    assert gen["eos_token_id"] == 1002 and gen["bos_token_id"] == 1000
    assert not any(os.path.exists(tmp_path / n) for n in HF_ASSET_FILES if n != "generation_config.json")
