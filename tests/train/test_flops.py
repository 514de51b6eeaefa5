"""FLOPs: hand computation on the tiny preset, windows as transformers cuts them, 7B parameter counts."""

import numpy as np
import pytest

from lingshu_jax.model.config import preset
from lingshu_jax.train import flops


def _hf_window_seqlens(grid, merge=2, ws=4):
    """transformers' Qwen2_5_VisionTransformer.get_window_index, in numpy: patches per window."""
    t, h, w = grid
    gh, gw = h // merge, w // merge
    index = np.arange(t * gh * gw).reshape(t, gh, gw)
    pad_h, pad_w = ws - gh % ws, ws - gw % ws
    nh, nw = (gh + pad_h) // ws, (gw + pad_w) // ws
    padded = np.pad(index, ((0, 0), (0, pad_h), (0, pad_w)), constant_values=-100)
    padded = padded.reshape(t, nh, ws, nw, ws).transpose(0, 1, 3, 2, 4).reshape(t, nh * nw, ws, ws)
    seqlens = (padded != -100).sum((2, 3)).reshape(-1)
    return seqlens[seqlens > 0] * merge * merge  # empty windows are dropped (unique_consecutive)


@pytest.mark.parametrize("grid", [(1, 4, 12), (2, 8, 8), (1, 10, 14), (3, 18, 6), (1, 2, 2), (1, 36, 50)])
def test_window_pairs_match_transformers_window_index(grid):
    v = preset("qwen2.5-vl-7b").vision
    win, full = flops.vision_attention_pairs(v, grid)
    assert win == int(np.sum(_hf_window_seqlens(grid) ** 2))
    assert full == grid[0] * (grid[1] * grid[2]) ** 2


def test_tiny_preset_matches_hand_computation():
    cfg = preset("tiny")  # text D=64 I=128 L=2 H=4 K=2 Dh=16 V=1024; vision Dv=32 Iv=64 Lv=3 Hv=2 full=(1,)
    n = flops.matmul_params(cfg)
    assert n == {
        "text_layers": 2 * (64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 128),
        "lm_head": 64 * 1024,
        "patch_embed": 1176 * 32,
        "vision_blocks": 3 * (4 * 32 * 32 + 3 * 32 * 64),
        "merger_0": 128 * 128,
        "merger_2": 128 * 64,
    }
    rows = [[5, 3], [8]]  # packed row (2 samples) + one sample: T = 16, causal pairs 15 + 6 + 36
    grids = [(1, 4, 12), (2, 8, 8)]  # windows: image 2x4 + 2x2 merged units = 32 + 16 patches; video 64 x2
    win = 32**2 + 16**2 + 2 * 64**2
    full = 48**2 + 2 * 64**2
    fwd = {
        "patch_embed": 2 * 37632 * 176,
        "vision_blocks": 2 * 30720 * 176,
        "vision_attention": 4 * 2 * 16 * (2 * win + 1 * full),
        "merger_0": 2 * 16384 * 44,
        "merger_2": 2 * 8192 * 44,
        "text_layers": 2 * 73728 * 16,
        "text_attention": 4 * 2 * 4 * 16 * 57,
        "lm_head": 2 * 65536 * 16,
    }
    assert flops.forward_flops(cfg, rows, grids) == fwd
    everything = 2 * fwd["patch_embed"] + 3 * sum(v for k, v in fwd.items() if k != "patch_embed")
    assert flops.train_flops_per_step(cfg, rows, grids) == everything
    stage1 = (
        2 * fwd["patch_embed"]
        + 3
        * (
            fwd["vision_blocks"]
            + fwd["vision_attention"]
            + fwd["merger_0"]
            + fwd["merger_2"]
            + fwd["text_attention"]
        )
        + 2 * (fwd["text_layers"] + fwd["lm_head"])
    )
    assert flops.train_flops_per_step(cfg, rows, grids, trainable=("vision", "merger")) == stage1
    frozen_vit = (
        fwd["patch_embed"]
        + fwd["vision_blocks"]
        + fwd["vision_attention"]
        + 2 * fwd["merger_0"]
        + 3 * (fwd["merger_2"] + fwd["text_layers"] + fwd["text_attention"] + fwd["lm_head"])
    )
    assert flops.train_flops_per_step(cfg, rows, grids, trainable=("merger", "text")) == frozen_vit
    assert flops.train_flops_breakdown(cfg, rows, grids, trainable=())["total"] == sum(fwd.values())
    b = flops.train_flops_breakdown(cfg, rows, grids)
    assert b["text"] + b["vision"] == b["total"] == everything


def test_text_only_batch_is_6n_plus_causal_attention():
    cfg = preset("tiny")
    n = flops.matmul_params(cfg)
    batch, seq = 3, 32
    want = (
        6 * (n["text_layers"] + n["lm_head"]) * batch * seq + 12 * 2 * 4 * 16 * batch * seq * (seq + 1) // 2
    )
    assert flops.train_flops_per_step(cfg, (batch, seq)) == want
    assert flops.train_flops_per_step(cfg, [[seq]] * batch) == want


def test_decode_flops_and_mfu():
    cfg = preset("tiny")
    assert flops.decode_flops_per_token(cfg, 10) == 2 * (73728 + 65536) + 4 * 2 * 64 * 10
    assert flops.mfu(1e15, 2.0, 8, 989e12) == pytest.approx(1e15 / (2.0 * 8 * 989e12))
    assert flops.peak_flops_per_device("NVIDIA H100 80GB HBM3") == 989e12
    assert flops.peak_flops_per_device("TPU v5 lite") == 197e12
    assert flops.peak_flops_per_device("TPU v5") == 459e12
    assert flops.peak_flops_per_device("cpu") is None
    with pytest.raises(ValueError, match="step_time"):
        flops.mfu(1.0, 0.0, 1, 1.0)


def test_qwen25_vl_7b_parameter_counts():
    cfg = preset("qwen2.5-vl-7b")
    n = flops.matmul_params(cfg)
    D, I, L, H, K, Dh, V = 3584, 18944, 28, 28, 4, 128, 152064  # noqa: E741 (the formula's names)
    assert n["text_layers"] == L * (D * H * Dh + 2 * D * K * Dh + H * Dh * D + 3 * D * I) == 6_525_288_448
    assert n["lm_head"] == D * V
    Dv, Iv, Lv = 1280, 3420, 32
    assert n["vision_blocks"] == Lv * (4 * Dv * Dv + 3 * Dv * Iv)
    assert n["merger_0"] + n["merger_2"] == (4 * Dv) ** 2 + 4 * Dv * D
    assert 7.0e9 < sum(n.values()) < 8.29e9  # matmul weights: all parameters less embeddings, norms, biases
    counts = flops.param_count(cfg)
    assert counts["total"] == 8_292_166_656  # Qwen2.5-VL-7B-Instruct's published parameter count
    assert 0.66e9 < counts["vision"] < 0.69e9
    assert counts["total"] - sum(n.values()) == (
        V * D  # input embedding
        + L * (2 * D + H * Dh + 2 * K * Dh)
        + D  # norms, qkv biases
        + Lv * (2 * Dv + 3 * Dv + Dv + 2 * Iv + Dv)
        + Dv
        + 4 * Dv
        + D
    )


def test_bad_inputs_raise():
    cfg = preset("tiny")
    with pytest.raises(ValueError, match="spatial_merge_size"):
        flops.train_flops_per_step(cfg, (1, 8), [(1, 3, 4)])
    with pytest.raises(ValueError, match="text_seq_lens"):
        flops.train_flops_per_step(cfg, [8, 8, 8])
    with pytest.raises(ValueError, match="trainable"):
        flops.train_flops_per_step(cfg, (1, 8), trainable=("llm",))
