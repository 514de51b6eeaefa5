"""Every malformed input raises ValueError naming the key and/or file, and what the checkpoint looks like."""

import json
import os
import shutil

import numpy as np
import pytest

from lingshu_jax.convert import hf_to_jax, jax_to_hf
from lingshu_jax.model.config import preset
from tests.convert.helpers import read_all, rewrite


def _tweaked(hf_checkpoint, tmp_path, fn, name="tiny"):
    hf_dir, _ = hf_checkpoint(name)
    tensors = read_all(hf_dir)
    fn(tensors)
    return rewrite(hf_dir, str(tmp_path / "bad"), tensors)


def test_missing_key_is_named(hf_checkpoint, tmp_path):
    bad = _tweaked(hf_checkpoint, tmp_path, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(ValueError, match=r"missing key 'model\.layers\.1\.mlp\.up_proj\.weight'"):
        hf_to_jax(bad)


def test_untied_checkpoint_without_lm_head_is_missing_lm_head(hf_checkpoint, tmp_path):
    bad = _tweaked(hf_checkpoint, tmp_path, lambda t: t.pop("lm_head.weight"))
    with pytest.raises(ValueError, match=r"missing key 'lm_head\.weight'.*tie_word_embeddings=False"):
        hf_to_jax(bad)


def test_unexpected_key_is_named_with_its_file(hf_checkpoint, tmp_path):
    bad = _tweaked(
        hf_checkpoint, tmp_path, lambda t: t.update({"model.layers.0.extra.weight": np.zeros(3, np.float32)})
    )
    with pytest.raises(
        ValueError, match=r"unexpected key 'model\.layers\.0\.extra\.weight' in model\.safetensors"
    ):
        hf_to_jax(bad)


def test_qwen2_vl_checkpoint_is_recognised_by_key(tmp_path):
    import transformers

    cfg = transformers.Qwen2VLConfig(
        vocab_size=256,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
        vision_config={"depth": 1, "embed_dim": 16, "hidden_size": 32, "num_heads": 2, "mlp_ratio": 2},
    )
    transformers.Qwen2VLForConditionalGeneration(cfg).save_pretrained(str(tmp_path))
    with pytest.raises(
        ValueError, match=r"unexpected key .visual\.blocks\.0\.(mlp\.fc1|norm1\.bias).*Qwen2-VL"
    ):
        hf_to_jax(str(tmp_path))


def test_text_only_qwen2_checkpoint_is_recognised_by_key(tmp_path):
    import transformers

    cfg = transformers.Qwen2Config(
        vocab_size=256,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    transformers.Qwen2ForCausalLM(cfg).save_pretrained(str(tmp_path))
    with pytest.raises(
        ValueError, match=r"missing key 'visual\.patch_embed\.proj\.weight'.*'model\.layers\.0\..*text-only"
    ):
        hf_to_jax(str(tmp_path))


def test_shape_mismatch_names_key_and_expected_shape(hf_checkpoint, tmp_path):
    bad = _tweaked(
        hf_checkpoint,
        tmp_path,
        lambda t: t.update({"visual.blocks.2.attn.qkv.bias": np.zeros(95, np.float32)}),
    )
    with pytest.raises(
        ValueError, match=r"key 'visual\.blocks\.2\.attn\.qkv\.bias' has shape \[95\], expected \[96\]"
    ):
        hf_to_jax(bad)


def test_unsupported_dtype_is_named(hf_checkpoint, tmp_path):
    bad = _tweaked(
        hf_checkpoint,
        tmp_path,
        lambda t: t.update({"model.norm.weight": t["model.norm.weight"].astype(np.float64)}),
    )
    with pytest.raises(ValueError, match=r"key 'model\.norm\.weight' has unsupported dtype F64"):
        hf_to_jax(bad)


def test_truncated_file_is_named(hf_checkpoint, tmp_path):
    hf_dir, _ = hf_checkpoint("tiny")
    bad = str(tmp_path / "bad")
    shutil.copytree(hf_dir, bad)
    f = os.path.join(bad, "model.safetensors")
    os.truncate(f, os.path.getsize(f) - 1000)
    with pytest.raises(ValueError, match=rf"{f}: .*truncated or corrupt"):
        hf_to_jax(bad)


def test_garbage_file_is_named(hf_checkpoint, tmp_path):
    hf_dir, _ = hf_checkpoint("tiny")
    bad = str(tmp_path / "bad")
    shutil.copytree(hf_dir, bad)
    with open(os.path.join(bad, "model.safetensors"), "wb") as f:
        f.write(b"\x10" * 100)
    with pytest.raises(ValueError, match=r"model\.safetensors: .*truncated or corrupt"):
        hf_to_jax(bad)


def test_index_pointing_to_missing_shard_names_shard_and_key(hf_checkpoint, tmp_path):
    hf_dir, _ = hf_checkpoint("tiny")
    out = str(tmp_path / "sharded")
    jax_to_hf(hf_to_jax(hf_dir), preset("tiny"), out, max_shard_size=300_000)
    with open(os.path.join(out, "model.safetensors.index.json")) as f:
        weight_map = json.load(f)["weight_map"]
    os.remove(os.path.join(out, "model-00002-of-00005.safetensors"))
    shutil.copyfile(os.path.join(hf_dir, "config.json"), os.path.join(out, "config.json"))
    key = min(k for k, v in weight_map.items() if v == "model-00002-of-00005.safetensors")
    with pytest.raises(
        ValueError, match=rf"shard 'model-00002-of-00005\.safetensors' \(holding key '{key}'\) does not exist"
    ):
        hf_to_jax(out)


def test_pickle_only_directory_is_refused(tmp_path):
    preset("tiny").save_pretrained(str(tmp_path))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not unpickled")
    with pytest.raises(ValueError, match=r"pytorch_model\.bin.*only safetensors files are read"):
        hf_to_jax(str(tmp_path))


def test_export_of_tree_with_wrong_shape_names_parameter(hf_checkpoint, tmp_path):
    hf_dir, _ = hf_checkpoint("tiny")
    params = hf_to_jax(hf_dir)
    params["model"]["norm"]["scale"] = np.zeros(63, np.float32)
    with pytest.raises(ValueError, match=r"model/norm/scale has shape \[63\], expected \[64\]"):
        jax_to_hf(params, preset("tiny"), str(tmp_path))
    params.pop("lm_head")
    with pytest.raises(ValueError, match=r"missing parameter lm_head/kernel"):
        jax_to_hf(params, preset("tiny"), str(tmp_path))
