"""Every recipe config names a slice whose chips its mesh uses exactly, and trains the recipe's global batch;
configs that build the same program are recognised (compiled once by `scripts/aot.py --recipes`)."""

import math

import pytest

from configs.lingshu import recipe, rl
from lingshu_jax.aot.recipes import program_key, recipe_specs
from lingshu_jax.aot.targets import parse_target


@pytest.mark.parametrize("size, slice_name", list(recipe.SLICES))
def test_recipe_on_its_slice_uses_every_chip_and_trains_64_rows_per_step(size, slice_name):
    for stage in (1, 2, 3):
        c = recipe.stage_config(stage, f"size={size},slice={slice_name}")
        chips = parse_target(c.slice).chips
        assert parse_target(slice_name).chips == chips
        assert math.prod(c.mesh[a] for a in ("data", "fsdp", "tensor", "sequence")) == chips
        assert c.data.batch_size * c.train.grad_accum == recipe.GLOBAL_BATCH_ROWS
        assert c.data.patch_budget == c.data.batch_size * recipe.PATCHES_PER_ROW
    g = rl.get_config(f"size={size},slice={slice_name}")
    assert g.slice == c.slice and g.rl.micro_batch_rows == chips and g.rl.rows_per_generate == 2 * chips


def test_unknown_slice_names_the_recipe_slices():
    with pytest.raises(ValueError, match="recipe slices are \\['v5p-16', 'v6e-16'\\]"):
        recipe.stage_config(2, "size=7b,slice=v5p-128")


def test_stage3_is_the_program_of_stage2_and_stage1_is_not():
    specs = recipe_specs()
    assert len(specs) == 16  # 4 slices x (SFT stages 1-3 + GRPO)
    s1, s2, s3 = (program_key(s) for s in specs[:3])
    assert s2 == s3 and s1 != s2
    rl_specs = [s for s in specs if "/rl.py:" in s]
    assert len(rl_specs) == 4 and program_key(rl_specs[0]) not in {s1, s2}
