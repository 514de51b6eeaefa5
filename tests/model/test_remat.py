"""Named remat policies (`model/remat.py`): unknown names fail at config time with the list of names; each
named policy keeps what it says between forward and backward (residuals of the scanned decoder). Equal
loss and gradients under the policies: tests/test_sharding.py (test_remat_policies_give_the_same_...)."""

import jax
import jax.numpy as jnp
import pytest
from jax.ad_checkpoint import print_saved_residuals

from lingshu_jax.model.config import preset
from lingshu_jax.model.layers import maybe_remat
from lingshu_jax.model.remat import REMAT_POLICIES, checkpoint_policy
from lingshu_jax.model.text import DecoderLayer, TextModel


def test_unknown_policy_names_fail_with_the_known_names():
    with pytest.raises(ValueError, match=r"ModelConfig.remat_policy 'dots'.*none, save_dots, .*full"):
        preset("tiny", remat_policy="dots")
    with pytest.raises(ValueError, match=r"ModelConfig.vision_remat_policy 'all'"):
        preset("tiny", vision_remat_policy="all")
    with pytest.raises(ValueError, match=r"remat policy 'x'"):
        maybe_remat(DecoderLayer, "x")


def test_every_name_maps_to_a_policy_and_none_means_no_remat():
    assert checkpoint_policy("none") is None and maybe_remat(DecoderLayer, "none") is DecoderLayer
    assert all(callable(checkpoint_policy(n)) for n in REMAT_POLICIES if n != "none")


def _residual_shapes(policy: str, capsys) -> list[str]:
    """Shapes (as printed, e.g. 'f32[2,1,8,32]') of what the tiny decoder keeps for its backward."""
    cfg = preset("tiny", remat_policy=policy)
    model = TextModel(cfg)
    x, pos, seg = jnp.ones((1, 8, 64)), jnp.zeros((3, 1, 8), jnp.int32), jnp.ones((1, 8), jnp.int32)
    variables = model.init(jax.random.key(0), x, pos, seg)
    capsys.readouterr()
    print_saved_residuals(lambda v, x: model.apply(v, x, pos, seg)[0].sum(), variables, x)
    lines = capsys.readouterr().out.splitlines()
    return [ln.split()[0] for ln in lines if "from the argument" not in ln]


def test_named_policies_keep_their_named_values_across_the_layer_scan(capsys):
    # tiny: 2 layers, q 4 heads x 16 = 64, k/v 2 heads x 16 = 32, attention output [.., 4, 16]
    shapes = {p: _residual_shapes(p, capsys) for p in ("full", "save_qkv_proj", "save_qkv_attn", "none")}
    kv, q, attn = "f32[2,1,8,32]", "f32[2,1,8,64]", "f32[2,1,8,4,16]"
    assert shapes["full"].count(kv) == 0 and attn not in shapes["full"]
    assert shapes["save_qkv_proj"].count(kv) == 2 and q in shapes["save_qkv_proj"]
    assert attn not in shapes["save_qkv_proj"]
    assert shapes["save_qkv_attn"].count(kv) == 2 and attn in shapes["save_qkv_attn"]
    counts = [len(shapes[p]) for p in ("full", "save_qkv_proj", "save_qkv_attn", "none")]
    assert counts == sorted(set(counts))  # strictly more kept from full to none
