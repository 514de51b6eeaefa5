"""Full-size presets without memory: our parameter tree (jax.eval_shape) has exactly transformers'
parameters (built on the meta device), after the key mapping, with the same shapes."""

import flax
import pytest
import torch
import transformers

from lingshu_jax.convert import keymap
from lingshu_jax.model.config import preset
from lingshu_jax.model.vlm import abstract_params

PRESETS = ["qwen2.5-vl-3b", "qwen2.5-vl-7b", "qwen2.5-vl-32b", "qwen2.5-vl-72b", "lingshu-7b", "lingshu-32b"]


@pytest.mark.parametrize("name", PRESETS)
def test_eval_shape_matches_transformers_meta_model(name):
    cfg = preset(name)
    ours = {
        "/".join(k): tuple(v.shape) for k, v in flax.traverse_util.flatten_dict(abstract_params(cfg)).items()
    }
    with torch.device("meta"):
        hf = transformers.Qwen2_5_VLForConditionalGeneration(
            transformers.Qwen2_5_VLConfig(**cfg.to_hf_dict())
        )
    index = keymap.hf_key_index(keymap.param_specs(cfg))
    seen = {}
    for key, tensor in hf.state_dict().items():
        key = keymap.normalize_hf_key(key)
        if cfg.tie_word_embeddings and key == "lm_head.weight":
            continue  # the tied head is the embedding; transformers does not save it either
        assert key in index, f"{name}: transformers parameter {key} has no counterpart in our tree"
        spec, layer = index[key]
        assert tuple(tensor.shape) == spec.hf_shape, key
        seen.setdefault(spec.name, set()).add(layer)
    expected = {s.name: s.shape for s in keymap.param_specs(cfg)}
    assert set(seen) == set(expected) == set(ours)
    for path, layers in seen.items():
        spec_layers = expected[path][0] if None not in layers else None
        assert layers == ({None} if spec_layers is None else set(range(spec_layers))), path
    assert ours == expected
    n = sum(int(torch.tensor(s).prod()) for s in ours.values())
    assert n == sum(p.numel() for p in hf.parameters()), (name, n)
