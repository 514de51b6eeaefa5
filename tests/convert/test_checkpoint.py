"""Orbax layout: manifest, assets, whole / leaf-by-leaf / plain-Orbax restore, refusal to overwrite."""

import json
import os

import jax
import ml_dtypes
import numpy as np
import orbax.checkpoint as ocp
import pytest

from lingshu_jax.convert import (
    config_from_checkpoint,
    hf_to_jax,
    iter_params,
    keymap,
    load_params,
    read_manifest,
)
from lingshu_jax.model.config import preset


def _equal_trees(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_orbax_round_trip_restores_the_same_tree(hf_checkpoint, tmp_path):
    hf_dir, _ = hf_checkpoint("tiny", "bfloat16")
    params = hf_to_jax(hf_dir, out_dir=str(tmp_path))
    restored = load_params(str(tmp_path))
    _equal_trees(params, restored)
    assert restored["model"]["layers"]["mlp"]["gate_proj"]["kernel"].dtype == ml_dtypes.bfloat16
    paths = [s.path for s in keymap.param_specs(preset("tiny"))]
    for path, leaf in iter_params(str(tmp_path), paths):  # leaf by leaf, numpy on the host
        assert isinstance(leaf, np.ndarray)
        np.testing.assert_array_equal(leaf, np.asarray(keymap.tree_get(params, path)))


def test_manifest_records_format_config_layout_and_dtype(hf_checkpoint, tmp_path):
    hf_dir, _ = hf_checkpoint("tiny-tied")
    hf_to_jax(hf_dir, out_dir=str(tmp_path), dtype="bfloat16", return_params=False)
    m = read_manifest(str(tmp_path))
    assert (m["format_version"], m["layout"], m["layer_axis"], m["dtype"]) == (1, "scanned", 0, "bfloat16")
    assert config_from_checkpoint(str(tmp_path)) == preset("tiny-tied")
    assert sorted(os.listdir(tmp_path / "hf_assets")) == sorted(
        [
            "chat_template.jinja",
            "generation_config.json",
            "preprocessor_config.json",
            "tokenizer.json",
            "tokenizer_config.json",
        ]
    )


def test_the_params_are_a_plain_orbax_pytree(hf_checkpoint, tmp_path):
    hf_dir, _ = hf_checkpoint("tiny")
    params = hf_to_jax(hf_dir, out_dir=str(tmp_path))
    with ocp.StandardCheckpointer() as ckptr:
        plain = ckptr.restore(str(tmp_path / read_manifest(str(tmp_path))["params_path"]))
    _equal_trees(params, plain)


def test_existing_checkpoint_is_not_overwritten_silently(hf_checkpoint, tmp_path):
    hf_dir, _ = hf_checkpoint("tiny")
    hf_to_jax(hf_dir, out_dir=str(tmp_path), return_params=False)
    with pytest.raises(ValueError, match=r"params already exists"):
        hf_to_jax(hf_dir, out_dir=str(tmp_path), return_params=False)
    hf_to_jax(hf_dir, out_dir=str(tmp_path), return_params=False, overwrite=True)


def test_manifest_from_a_newer_format_is_refused(hf_checkpoint, tmp_path):
    hf_dir, _ = hf_checkpoint("tiny")
    hf_to_jax(hf_dir, out_dir=str(tmp_path), return_params=False)
    f = tmp_path / "lingshu_checkpoint.json"
    m = json.loads(f.read_text())
    f.write_text(json.dumps({**m, "format_version": 99}))
    with pytest.raises(ValueError, match=r"lingshu_checkpoint\.json: format .* version 99"):
        load_params(str(tmp_path))
