"""Model-level packing correctness: the per-sample losses of a packed batch equal the losses of the same
samples run one by one (attention confined to each segment, per-segment M-RoPE, own vision tokens)."""

import jax
import numpy as np

from lingshu_jax.data.packing import unpack_batch
from lingshu_jax.data.pipeline import make_pipeline
from lingshu_jax.model.vlm import Qwen25VL, init_params
from lingshu_jax.train.loss import next_token_targets, per_segment_losses
from tests.data.helpers import data_config, mixed_dataset


def test_packed_batch_per_sample_losses_equal_one_by_one(tmp_path, processor, model_config):
    path = mixed_dataset(str(tmp_path), n=12)
    cfg = data_config(path, packing=True, seq_len=256, batch_size=2, patch_budget=512, shuffle=False)
    batch = next(iter(make_pipeline(cfg, processor.tokenizer, processor, model_config)))
    assert (np.asarray(batch["segment_ids"]).max(axis=1) >= 2).all()  # really packed
    assert batch["pixel_values"].dtype == np.uint8  # normalised inside the model
    model = Qwen25VL(model_config)
    params = init_params(model_config, jax.random.key(0))
    apply = jax.jit(lambda p, b: model.apply({"params": p}, b)[0])

    logits = apply(params, {k: v for k, v in batch.items() if k not in ("labels", "loss_mask")})
    seg = np.asarray(batch["segment_ids"])
    targets = next_token_targets(np.asarray(batch["labels"]), seg)
    k = int(seg.max())
    packed = np.asarray(per_segment_losses(logits, targets, seg, k))  # [B, k]
    packed = [packed[r, s - 1] for r in range(seg.shape[0]) for s in np.unique(seg[r][seg[r] > 0])]

    singles = []
    for sample in unpack_batch(batch):
        one = {
            k2: (
                v[:, None] if k2 == "position_ids" else v if v.ndim == 2 and k2 == "pixel_values" else v[None]
            )
            for k2, v in sample.items()
            if k2 not in ("labels", "loss_mask")
        }
        for vk in ("vision_pos", "window_segments", "frame_segments", "pixel_scale", "pixel_offset"):
            if vk in sample:
                one[vk] = sample[vk]
        lg = apply(params, one)
        t = next_token_targets(sample["labels"][None], one["segment_ids"])
        singles.append(float(per_segment_losses(lg, t, one["segment_ids"], 1)[0, 0]))
    assert len(singles) == len(packed) >= 4
    np.testing.assert_allclose(packed, singles, rtol=2e-5, atol=2e-6)
