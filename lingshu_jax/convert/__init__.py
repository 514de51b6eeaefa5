"""HF safetensors <-> our scanned parameter tree (streaming), and the Orbax layout of converted checkpoints.

hf_to_jax(hf_dir, out_dir=None, dtype=None, shardings=None) -> params
jax_to_hf(params_or_checkpoint_dir, config, out_dir, source_hf_dir=None, dtype=None, max_shard_size=5e9)
load_params(checkpoint_dir, shardings=None) -> params      (a directory written by hf_to_jax)
param_specs(config) -> [ParamSpec]                         (every tensor: our path <-> HF key + transform)
param_spec_tree(config, dtype) -> ShapeDtypeStruct tree    (param_specs as a tree; no Flax init)
load.load_model(path, dtype, ...) -> (config, params, source dir)  (HF or ours, optionally sharded)
"""

from lingshu_jax.convert.checkpoint import config_from_checkpoint, iter_params, load_params, read_manifest
from lingshu_jax.convert.hf_to_jax import hf_to_jax
from lingshu_jax.convert.jax_to_hf import jax_to_hf
from lingshu_jax.convert.keymap import ParamSpec, normalize_hf_key, param_spec_tree, param_specs

__all__ = [
    "hf_to_jax",
    "jax_to_hf",
    "load_params",
    "iter_params",
    "read_manifest",
    "config_from_checkpoint",
    "param_specs",
    "param_spec_tree",
    "ParamSpec",
    "normalize_hf_key",
]
