"""Per-sample transform: labels (assistant | all), image-safe truncation, M-RoPE ids, text-only samples."""

import numpy as np
import pytest

from lingshu_jax.data import ErrorPolicy
from lingshu_jax.data.transforms import IGNORE, SampleTransform, safe_cut
from lingshu_jax.model.rope import get_rope_index

from .helpers import text_only, vqa, write_png


def _transform(ops, root, **kw):
    base = dict(
        ops=ops, policy=ErrorPolicy("error"), seq_len=512, patch_budget=1024, roots=[str(root)], names=["d"]
    )
    base.update(kw)
    return SampleTransform(**base)


def _raw(record, where="d.jsonl:1"):
    import json

    return {"data": json.dumps(record).encode(), "where": where, "source": 0}


def test_assistant_labels_cover_answers_and_im_end_only(tmp_path, ops, processor):
    rec = {
        "messages": [
            {"role": "user", "content": "Q1"},
            {"role": "assistant", "content": "A1"},
            {"role": "user", "content": "Q2"},
            {"role": "assistant", "content": "A2"},
        ]
    }
    s = _transform(ops, tmp_path)(_raw(rec))
    supervised = s["input_ids"][s["labels"] != IGNORE]
    assert processor.tokenizer.decode(supervised) == "A1<|im_end|>A2<|im_end|>"
    assert s["labels"][0] == IGNORE


def test_train_on_all_supervises_text_but_not_image_pads(tmp_path, ops, model_config):
    write_png(str(tmp_path / "a.png"), (56, 56))
    s = _transform(ops, tmp_path, train_on="all")(_raw(vqa("a.png")))
    ids, labels = s["input_ids"], s["labels"]
    is_pad = ids == model_config.image_token_id
    assert is_pad.sum() == 4 and (labels[is_pad] == IGNORE).all()
    assert (labels[1:][~is_pad[1:]] == ids[1:][~is_pad[1:]]).all() and labels[0] == IGNORE


def test_sample_shapes_and_rope_ids(tmp_path, ops, model_config):
    write_png(str(tmp_path / "a.png"), (84, 56))
    s = _transform(ops, tmp_path)(_raw(vqa("a.png")))
    n = len(s["input_ids"])
    assert (
        s["input_ids"].dtype == np.int32 and s["labels"].shape == (n,) and s["position_ids"].shape == (3, n)
    )
    assert s["image_grid_thw"].tolist() == [[1, 4, 6]] and s["pixel_values"].shape == (24, 1176)
    assert s["pixel_values"].dtype == np.uint8  # normalised by the model (DataConfig.pixel_dtype)
    v = model_config.vision
    want, _ = get_rope_index(
        s["input_ids"][None],
        image_token_id=model_config.image_token_id,
        video_token_id=model_config.video_token_id,
        spatial_merge_size=v.spatial_merge_size,
        tokens_per_second=v.tokens_per_second,
        image_grid_thw=s["image_grid_thw"],
    )
    np.testing.assert_array_equal(s["position_ids"], want[:, 0])


def test_text_only_sample_has_empty_vision(tmp_path, ops):
    s = _transform(ops, tmp_path)(_raw(text_only()))
    assert s["pixel_values"].shape == (0, 1176) and s["image_grid_thw"].shape == (0, 3)
    n = len(s["input_ids"])
    np.testing.assert_array_equal(s["position_ids"], np.broadcast_to(np.arange(n), (3, n)))


def test_safe_cut_never_splits_an_image_block():
    S, P, E = 7, 9, 8  # vision_start, image_pad, vision_end
    ids = np.array([1, 2, S, P, P, P, E, 3, 4])
    for cut, want in [(2, 2), (3, 2), (5, 2), (6, 2), (7, 7), (8, 8), (20, 9)]:
        assert safe_cut(ids, cut, P, S, E) == want, cut


@pytest.mark.parametrize("seq_len, cut, kept", [(50, 44, 1), (100, 100, 2)])
def test_truncate_keeps_whole_images_only(tmp_path, ops, model_config, seq_len, cut, kept):
    """Tokens: image 1's block is [23, 29), image 2's (16 pads) is [44, 62); 'one' is supervised at 38."""
    write_png(str(tmp_path / "a.png"), (56, 56))
    write_png(str(tmp_path / "b.png"), (112, 112))
    rec = {
        "messages": [
            {"role": "user", "content": "<image>first"},
            {"role": "assistant", "content": "one"},
            {"role": "user", "content": "<image>second"},
            {"role": "assistant", "content": "two " * 30},
        ],
        "images": ["a.png", "b.png"],
    }
    full = _transform(ops, tmp_path)(_raw(rec))
    assert full["input_ids"][44] == ops.vision_start_id and full["input_ids"][61] == ops.vision_end_id
    s = _transform(ops, tmp_path, seq_len=seq_len, truncation="truncate")(_raw(rec))
    assert s["stats"]["truncated"] == 1 and len(s["input_ids"]) == cut
    np.testing.assert_array_equal(s["input_ids"], full["input_ids"][:cut])
    np.testing.assert_array_equal(s["labels"], full["labels"][:cut])
    assert len(s["image_grid_thw"]) == kept and len(s["pixel_values"]) == [0, 16, 80][kept]
    np.testing.assert_array_equal(s["pixel_values"], full["pixel_values"][: len(s["pixel_values"])])
    assert (s["input_ids"] == model_config.image_token_id).sum() == [0, 4, 20][kept]


def test_truncation_that_leaves_no_labels_is_a_data_error(tmp_path, ops):
    rec = text_only(q="word " * 100)
    with pytest.raises(ValueError, match=r"d.jsonl:1: no supervised tokens .*after truncation"):
        _transform(ops, tmp_path, seq_len=40, truncation="truncate")(_raw(rec))
