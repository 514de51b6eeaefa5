"""M-RoPE position ids equal transformers' get_rope_index, incl. left padding and video timing."""

import numpy as np
import pytest
import torch
import transformers

from lingshu_jax.model.config import preset
from lingshu_jax.model.rope import get_rope_index


@pytest.fixture(scope="module")
def hf_model():
    cfg = preset("tiny")
    with torch.device("meta"):
        m = transformers.Qwen2_5_VLModel(transformers.Qwen2_5_VLConfig(**cfg.to_hf_dict()))
    return cfg, m


def _row(cfg, parts):
    ids = []
    for p in parts:
        if isinstance(p, tuple):  # (kind, t, h, w) in patches
            kind, t, h, w = p
            tok = cfg.image_token_id if kind == "image" else cfg.video_token_id
            ids += [cfg.vision_start_token_id] + [tok] * (t * h * w // 4) + [cfg.vision_end_token_id]
        else:
            ids += list(range(10, 10 + p))
    return ids


@pytest.mark.parametrize(
    "layout",
    [
        [[3, ("image", 1, 8, 12), 5]],
        [[2, ("image", 1, 4, 4), 1, ("image", 1, 10, 6), 3]],
        [[4, ("video", 4, 8, 8), 2]],
        [[2, ("image", 1, 4, 8), 3], [1, ("image", 1, 6, 6), 9, ("video", 2, 4, 4), 2]],  # batch, left padded
    ],
)
def test_position_ids_match_transformers(hf_model, layout):
    cfg, m = hf_model
    rows = [_row(cfg, r) for r in layout]
    s = max(map(len, rows))
    ids = np.full((len(rows), s), 0, np.int64)
    mask = np.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, s - len(r) :] = r
        mask[i, s - len(r) :] = 1
    grids = {"image": [], "video": []}
    for r in layout:
        for p in r:
            if isinstance(p, tuple):
                grids[p[0]].append(p[1:])
    kw = {k + "_grid_thw": np.array(v) for k, v in grids.items() if v}
    secs = np.array([0.5] * len(grids["video"])) if grids["video"] else None
    mm = np.where(ids == cfg.image_token_id, 1, np.where(ids == cfg.video_token_id, 2, 0))
    ref, ref_delta = m.get_rope_index(
        torch.tensor(ids),
        mm_token_type_ids=torch.tensor(mm),
        attention_mask=torch.tensor(mask),
        second_per_grid_ts=None if secs is None else torch.tensor(secs),
        **{k: torch.tensor(v) for k, v in kw.items()},
    )
    got, delta = get_rope_index(
        ids,
        image_token_id=cfg.image_token_id,
        video_token_id=cfg.video_token_id,
        spatial_merge_size=2,
        tokens_per_second=cfg.vision.tokens_per_second,
        attention_mask=mask,
        second_per_grid_ts=secs,
        **kw,
    )
    np.testing.assert_array_equal(got[:, mask.astype(bool)], ref.numpy()[:, mask.astype(bool)])
    np.testing.assert_array_equal(delta, ref_delta.numpy().reshape(-1))


def test_run_of_pad_tokens_disagreeing_with_grid_is_a_clear_error():
    cfg = preset("tiny")
    ids = np.array([[1, cfg.image_token_id, cfg.image_token_id, 2]])
    with pytest.raises(ValueError, match="does not match grid"):
        get_rope_index(
            ids,
            image_token_id=cfg.image_token_id,
            video_token_id=cfg.video_token_id,
            spatial_merge_size=2,
            tokens_per_second=2,
            image_grid_thw=np.array([[1, 4, 4]]),
        )
