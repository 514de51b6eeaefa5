"""Key map: every HF tensor has exactly one parameter path, with DESIGN.md's shapes, both layouts."""

import numpy as np
import pytest

from lingshu_jax.convert import keymap
from lingshu_jax.model.config import preset
from tests.convert.helpers import read_all


@pytest.mark.parametrize("name", ["tiny", "tiny-tied"])
def test_specs_cover_exactly_the_keys_transformers_saves(hf_checkpoint, name):
    hf_dir, _ = hf_checkpoint(name)
    saved = read_all(hf_dir)
    index = keymap.hf_key_index(keymap.param_specs(preset(name)))
    assert sorted(index) == sorted(saved)
    for key, (spec, _) in index.items():
        assert saved[key].shape == spec.hf_shape, key


def test_in_memory_names_of_transformers_5_normalise_to_saved_names(hf_checkpoint):
    hf_dir, model = hf_checkpoint("tiny")
    in_memory = list(model.state_dict())
    assert any(k.startswith("model.language_model.") for k in in_memory)
    assert any(k.startswith("model.visual.") for k in in_memory)
    assert sorted(keymap.normalize_hf_key(k) for k in in_memory) == sorted(read_all(hf_dir))


def test_shapes_follow_the_design_table():
    cfg = preset("tiny")
    shapes = {s.name: s.shape for s in keymap.param_specs(cfg)}
    dv, iv, lv, d, i, lt, v = 32, 64, 3, 64, 128, 2, 1024
    assert shapes["visual/patch_embed/kernel"] == (1176, dv)
    assert shapes["visual/blocks/attn/qkv/kernel"] == (lv, dv, 3 * dv)
    assert shapes["visual/blocks/attn/qkv/bias"] == (lv, 3 * dv)
    assert shapes["visual/blocks/mlp/down_proj/kernel"] == (lv, iv, dv)
    assert shapes["visual/merger/mlp_0/kernel"] == (4 * dv, 4 * dv)
    assert shapes["visual/merger/mlp_2/kernel"] == (4 * dv, d)
    assert shapes["model/embed_tokens/embedding"] == (v, d)
    assert shapes["model/layers/self_attn/k_proj/kernel"] == (lt, d, 2 * 16)
    assert shapes["model/layers/self_attn/o_proj/kernel"] == (lt, d, d)
    assert shapes["model/layers/mlp/down_proj/kernel"] == (lt, i, d)
    assert shapes["lm_head/kernel"] == (d, v)
    assert "lm_head/kernel" not in {s.name for s in keymap.param_specs(preset("tiny-tied"))}
    assert len(shapes) == 33


@pytest.mark.parametrize("kind", ["transpose", "patch", "identity"])
def test_transforms_invert_and_slices_match_whole_tensor(kind):
    hf_shape = {"transpose": (6, 4), "patch": (5, 3, 2, 2, 2), "identity": (7, 3)}[kind]
    spec = keymap.ParamSpec(("x",), "x.weight", hf_shape, kind)
    hf = np.arange(np.prod(hf_shape), dtype=np.float32).reshape(hf_shape)
    ours = keymap.to_ours(spec, hf)
    assert ours.shape == spec.shape
    np.testing.assert_array_equal(keymap.to_hf(spec, ours), hf)
    idx = (slice(1, 3), slice(0, 2))
    hf_idx, finish = keymap.hf_slice_for(spec, idx)
    np.testing.assert_array_equal(finish(hf[hf_idx]), ours[idx])
    out = np.zeros(spec.shape, np.float32)
    for start in range(0, hf_shape[0], 2):  # row blocks, as the streaming reader gives
        out[keymap.ours_index(spec, start, start + 2)] = keymap.to_ours(spec, hf[start : start + 2])
    np.testing.assert_array_equal(out, ours)


def test_param_spec_tree_of_a_real_size_costs_no_memory():
    import jax

    tree = keymap.param_spec_tree(preset("qwen2.5-vl-7b"), np.dtype("float32"))
    n = sum(np.prod(x.shape) for x in jax.tree.leaves(tree))
    assert 8.2e9 < n < 8.4e9  # Qwen2.5-VL-7B: 8.29B parameters


@pytest.mark.parametrize("name", ["tiny", "tiny-tied"])
def test_specs_match_the_flax_model_parameter_tree(name):
    import jax

    from lingshu_jax.model import vlm

    tree = vlm.abstract_params(preset(name))
    model = {
        "/".join(str(getattr(k, "key", k)) for k in path): tuple(x.shape)
        for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]
    }
    assert model == {s.name: s.shape for s in keymap.param_specs(preset(name))}
