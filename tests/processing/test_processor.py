"""Processor vs transformers' Qwen2_5_VLProcessor (built in-test from our tokenizer dir), errors, SFT masks."""

import copy
import json
import os
import shutil

import numpy as np
import pytest

from lingshu_jax.processing import ImageProcessor, Processor, Tokenizer, load_image
from lingshu_jax.processing.image import VideoProcessor
from lingshu_jax.processing.processor import expand_placeholders, pad_repeats

from .helpers import rgb

IMAGE_CFG = {"min_pixels": 56 * 56, "max_pixels": 64 * 28 * 28}  # same as the hf_processor fixture


@pytest.fixture(scope="module")
def processor(small_tok_dir):
    return Processor(Tokenizer.from_pretrained(small_tok_dir), ImageProcessor(**IMAGE_CFG), VideoProcessor())


def _user(*parts):
    content = [{"type": p} if p in ("image", "video") else {"type": "text", "text": p} for p in parts]
    return {"role": "user", "content": content}


def _video(n=3, seed=0):
    return [rgb(60, 80, seed=seed + i) for i in range(n)]


CASES = {
    "text_only": ([[{"role": "user", "content": "Is there a fracture?"}]], None, None),
    "one_image": ([[_user("image", "What is shown?")]], [rgb(50, 70, 1)], None),
    "two_images": ([[_user("image", "image", "Compare them.")]], [rgb(300, 200, 2), rgb(40, 900, 3)], None),
    "multi_turn": (
        [
            [
                _user("image", "Describe."),
                {"role": "assistant", "content": "A chest X-ray."},
                _user("Any effusion?"),
            ]
        ],
        [rgb(128, 128, 4)],
        None,
    ),
    "video": ([[_user("video", "What happens?")]], None, [_video()]),
    "left_padded_batch": (
        [
            [_user("image", "Short?")],
            [_user("A much longer question without any image at all, padded on the left?")],
            [_user("image", "image", "Two?")],
        ],
        [rgb(64, 64, 5), rgb(200, 90, 6), rgb(33, 77, 7)],
        None,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_outputs_equal_transformers_qwen2_5_vl_processor(processor, hf_processor, case):
    conversations, images, videos = CASES[case]
    ours = processor(conversations, images=images, videos=videos, add_generation_prompt=True)
    texts = [
        hf_processor.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations
    ]
    ref = hf_processor(
        text=texts, images=images, videos=videos, padding=True, padding_side="left", return_tensors="np"
    )
    for key in ("input_ids", "attention_mask", "mm_token_type_ids"):
        np.testing.assert_array_equal(ours[key], ref[key], err_msg=key)
        assert ours[key].dtype == np.int64
    assert (ours["input_ids"] == processor.tokenizer.image_pad_id).sum() == sum(
        int(np.prod(g)) // 4 for g in ours.get("image_grid_thw", np.zeros((0, 3)))
    )
    for key in ("image_grid_thw", "video_grid_thw"):
        assert (key in ours) == (key in ref), key
        if key in ref:
            np.testing.assert_array_equal(ours[key], ref[key])
    if "pixel_values" in ref:
        assert float(np.abs(ours["pixel_values"] - ref["pixel_values"]).max()) <= 1e-6
    if "pixel_values_videos" in ref:
        np.testing.assert_array_equal(ours["pixel_values_videos"], ref["pixel_values_videos"])
        np.testing.assert_allclose(ours["second_per_grid_ts"], ref["second_per_grid_ts"])


def test_single_conversation_gives_batch_of_one_and_right_padding_is_optional(processor):
    conv = CASES["one_image"][0][0]
    out = processor(conv, images=[rgb(50, 70, 1)])
    assert out["input_ids"].shape[0] == 1 and out["attention_mask"].all()
    batch = [[_user("Hi")], [_user("A longer message here")]]
    right = processor(batch, padding_side="right")
    left = processor(batch)
    assert right["attention_mask"][0, 0] == 1 and left["attention_mask"][0, -1] == 1
    assert right["attention_mask"][0, -1] == 0 and left["attention_mask"][0, 0] == 0
    assert (left["input_ids"][left["attention_mask"] == 0] == processor.tokenizer.pad_token_id).all()


def test_more_image_placeholders_than_images_raises(processor):
    with pytest.raises(ValueError, match="2 <\\|image_pad\\|> placeholders .* 1 images"):
        processor([_user("image", "image", "x")], images=[rgb(30, 30)])
    with pytest.raises(ValueError, match="placeholders"):
        processor([_user("x")], images=[rgb(30, 30)])
    with pytest.raises(ValueError, match="video"):
        processor([_user("video", "x")])


def test_grid_disagreeing_with_pixel_rows_raises(processor):
    good = processor.image_processor([rgb(56, 56)])
    bad = {"pixel_values": good["pixel_values"], "image_grid_thw": np.array([[1, 4, 6]])}
    with pytest.raises(ValueError, match="pixel rows"):
        processor([_user("image", "x")], image_inputs=bad)
    with pytest.raises(ValueError, match="divisible"):
        processor(
            [_user("image", "x")],
            image_inputs={
                "pixel_values": np.zeros((3, 1176), np.float32),
                "image_grid_thw": np.array([[1, 1, 3]]),
            },
        )
    ok = processor([_user("image", "x")], image_inputs=good)
    np.testing.assert_array_equal(
        ok["input_ids"], processor([_user("image", "x")], images=[rgb(56, 56)])["input_ids"]
    )


def test_images_from_content_parts_paths_and_dicom(processor, tmp_path):
    pydicom_data = pytest.importorskip("pydicom.data")
    png = tmp_path / "scan.png"
    rgb(90, 60, 9).save(png)
    dcm = pydicom_data.get_testdata_file("MR_small.dcm")
    conv = [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": str(png)},
                {"type": "image", "image": dcm},
                {"type": "text", "text": "Both?"},
            ],
        }
    ]
    out = processor(conv)
    ref = processor(conv, images=[rgb(90, 60, 9), load_image(dcm)])
    np.testing.assert_array_equal(out["input_ids"], ref["input_ids"])
    np.testing.assert_array_equal(out["pixel_values"], ref["pixel_values"])


def test_training_encoding_masks_only_assistant_replies_and_im_end(processor):
    conv = [
        _user("image", "Describe."),
        {"role": "assistant", "content": "A chest X-ray."},
        _user("Any effusion?"),
        {"role": "assistant", "content": [{"type": "text", "text": " No effusion.\n"}]},
    ]
    images = [rgb(100, 140, 3)]
    out = processor.encode_for_training(conv, images=images)
    plain = processor(conv, images=images, add_generation_prompt=False)
    np.testing.assert_array_equal(out["input_ids"], plain["input_ids"])
    ids, mask = out["input_ids"][0], out["assistant_mask"][0]
    tok = processor.tokenizer
    # The masked tokens are exactly the replies followed by their <|im_end|>.
    runs = np.split(np.flatnonzero(mask), np.flatnonzero(np.diff(np.flatnonzero(mask)) > 1) + 1)
    assert [tok.decode(ids[r]) for r in runs] == ["A chest X-ray.<|im_end|>", " No effusion.\n<|im_end|>"]
    assert (out["labels"][0][~mask] == -100).all() and (out["labels"][0][mask] == ids[mask]).all()
    assert not mask[ids == tok.image_pad_id].any()


def test_from_pretrained_reads_tokenizer_preprocessor_and_template(small_tok_dir, tmp_path):
    d = tmp_path / "ckpt"
    shutil.copytree(small_tok_dir, d)
    (d / "preprocessor_config.json").write_text(json.dumps({"min_pixels": 3136, "max_pixels": 12845056}))
    proc = Processor.from_pretrained(str(d))
    assert (proc.image_processor.min_pixels, proc.image_processor.max_pixels) == (3136, 12845056)
    assert proc.video_processor.max_pixels == 12845056
    with open(os.path.join(d, "tokenizer_config.json")) as f:
        assert proc.chat.template == json.load(f)["chat_template"]
    out = proc([_user("Hi")])
    assert proc.decode(out["input_ids"][0], skip_special_tokens=False).endswith("<|im_start|>assistant\n")


def test_processor_pickles_for_data_loader_workers(processor):
    import pickle

    clone = pickle.loads(pickle.dumps(processor))
    conv = [_user("image", "x")]
    np.testing.assert_array_equal(
        clone(conv, images=[rgb(40, 40)])["input_ids"], processor(conv, images=[rgb(40, 40)])["input_ids"]
    )


def _assistant(text):
    return {"role": "assistant", "content": text}


FAST_PATH_CASES = {
    "image_then_two_turns": (
        [
            _user("image", "\n  Describe.  "),
            {"role": "assistant", "content": "A chest X-ray."},
            _user("image", "image", " Compare\n"),
            {"role": "assistant", "content": [{"type": "text", "text": " No change.\n\n"}]},
        ],
        [rgb(100, 140, 3), rgb(60, 60, 4), rgb(30, 200, 5)],
        None,
    ),
    "image_in_assistant_turn": (
        [
            _user("Draw it."),
            {"role": "assistant", "content": [{"type": "image"}, {"type": "text", "text": "Here."}]},
        ],
        [rgb(90, 90, 6)],
        None,
    ),
    "video_and_image": (
        [_user("video", "image", "What?"), _assistant("Both.")],
        [rgb(70, 50, 7)],
        [_video()],
    ),
    "text_only": ([_user("Hi"), _assistant("Hello")], None, None),
}


@pytest.mark.parametrize("case", list(FAST_PATH_CASES))
def test_expanding_pad_ids_equals_tokenising_the_expanded_text(processor, case):
    """Tokenising with one pad per image/video and repeating the pad ids (with the assistant mask) gives what
    tokenising the text with every pad written out gives (the reference path)."""
    conv, images, videos = FAST_PATH_CASES[case]
    text, spans = processor.chat.render_with_assistant_spans(conv)
    counts = processor._token_counts(processor._vision(images, None, videos, None, None))
    ids, mask = processor._encode_expanded_with_mask(text, spans, *counts)
    ref_ids, ref_mask = processor._encode_expanded_with_mask_slow(text, spans, *counts)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(mask, ref_mask)
    (expanded,), _ = expand_placeholders([text], *counts)
    np.testing.assert_array_equal(ids, processor.tokenizer.encode(expanded))
    assert (ids == processor.image_token_id).sum() == sum(counts[0])
    batch = processor._encode_batch_expanded(
        [text, "<|im_start|>user\nx<|im_end|>\n", text], *(c * 2 for c in counts)
    )
    for row, ref in zip(
        batch, processor.tokenizer.encode_batch([expanded, "<|im_start|>user\nx<|im_end|>\n", expanded])
    ):
        np.testing.assert_array_equal(row, ref)


def test_pad_repeats_counts_each_pad_and_refuses_a_mismatch():
    ids = np.array([1, 5, 2, 5, 6])
    assert pad_repeats(ids, {5: [3, 4], 6: [2]}).tolist() == [1, 3, 1, 4, 2]
    assert pad_repeats(ids, {5: [3]}) is None  # the tokenizer did not split the pads out: caller falls back
    assert pad_repeats(ids, {7: []}).tolist() == [1] * 5


def test_encoding_falls_back_to_the_expanded_text_when_pads_are_not_found(processor):
    conv, images, _ = FAST_PATH_CASES["image_then_two_turns"]
    text, spans = processor.chat.render_with_assistant_spans(conv)
    counts = processor._token_counts(processor._vision(images, None, None, None, None))
    odd = copy.copy(processor)
    odd.image_token_id = processor.tokenizer.token_id("<|box_start|>")  # never in the text: no pads found
    ids, mask = odd._encode_expanded_with_mask(text, spans, *counts)
    ref_ids, ref_mask = processor._encode_expanded_with_mask_slow(text, spans, *counts)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(mask, ref_mask)
