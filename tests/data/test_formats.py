"""Every accepted conversation layout normalises to the same canonical messages and renders the same."""

import numpy as np
import pytest

from lingshu_jax.data.errors import DataError
from lingshu_jax.data.formats import decode_record, media, to_messages

CANONICAL = [
    {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
    {"role": "user", "content": [{"type": "image", "image": "a.png"}, {"type": "text", "text": "What?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "A lung."}]},
]

LAYOUTS = {
    "hf_typed": {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [{"type": "image", "image": "a.png"}, {"type": "text", "text": "What?"}],
            },
            {"role": "assistant", "content": [{"type": "text", "text": "A lung."}]},
        ]
    },
    "llamafactory": {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "<image>What?"},
            {"role": "assistant", "content": "A lung."},
        ],
        "images": ["a.png"],
    },
    "sharegpt": {
        "conversations": [{"from": "human", "value": "<image>What?"}, {"from": "gpt", "value": "A lung."}],
        "system": "Be brief.",
        "images": ["a.png"],
    },
    # TRL / Parquet rows: image parts are placeholders (every struct field present, None where unused) that
    # take the record's `images` in order.
    "trl_placeholders": {
        "messages": [
            {
                "role": "system",
                "content": [{"type": "text", "text": "Be brief.", "image": None, "image_url": None}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "image", "text": None, "image": None, "image_url": None},
                    {"type": "text", "text": "What?", "image": None, "image_url": None},
                ],
            },
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "A lung.", "image": None, "image_url": None}],
            },
        ],
        "images": ["a.png"],
    },
    "llava": {
        "image": "a.png",
        "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "<image>What?"},
            {"from": "gpt", "value": "A lung."},
        ],
    },
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_layouts_normalise_to_canonical_messages(layout):
    messages, images = to_messages(decode_record(__import__("json").dumps(LAYOUTS[layout]), "f:1"), "f:1")
    assert messages == CANONICAL and images == ["a.png"]


def test_several_image_tags_take_images_in_order():
    rec = {
        "messages": [
            {"role": "user", "content": "<image> vs <image>: which?"},
            {"role": "assistant", "content": "left"},
            {"role": "user", "content": "and <image>?"},
            {"role": "assistant", "content": "ok"},
        ],
        "images": ["1.png", "2.png", "3.png"],
    }
    messages, images = to_messages(rec, "f:1")
    assert images == ["1.png", "2.png", "3.png"]
    assert [p["type"] for p in messages[0]["content"]] == ["image", "text", "image", "text"]


def test_inline_images_and_text_only():
    arr = np.zeros((4, 4, 3), np.uint8)
    messages, images = to_messages(
        {
            "messages": [{"role": "user", "content": "<image>hi"}, {"role": "assistant", "content": "yo"}],
            "images": [arr],
        },
        "w",
    )
    assert images[0] is arr
    messages, images = to_messages(
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}, "w"
    )
    assert images == [] and messages[1]["content"] == [{"type": "text", "text": "yo"}]


def test_tfds_style_json_text_fields_are_parsed():
    rec = decode_record(
        {"messages": b'[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]'}, "w"
    )
    assert to_messages(rec, "w")[0][0]["role"] == "user"


def test_unknown_layout_is_a_bad_record():
    with pytest.raises(DataError, match=r"f:3: no 'messages' or 'conversations' key .*\[bad_record\]"):
        to_messages({"text": "hello"}, "f:3")


def test_image_placeholders_without_enough_listed_images_are_a_mismatch():
    part = {"type": "image", "image": None}
    rec = {"messages": [{"role": "user", "content": [part, part]}, {"role": "assistant", "content": "x"}]}
    with pytest.raises(DataError, match=r"2 <image> tags but 1 images") as e:
        to_messages({**rec, "images": ["a.png"]}, "f:3")
    assert e.value.kind == "image_tag_mismatch"
    with pytest.raises(DataError, match="image part without 'image' \\(and no 'images' listed\\)"):
        to_messages(rec, "f:4")


def test_video_tags_and_parts_take_videos_in_order_beside_images():
    rec = {
        "messages": [
            {"role": "user", "content": "<video>then<image>and<video>?"},
            {"role": "assistant", "content": "ok"},
        ],
        "images": ["a.png"],
        "videos": ["clip1", ["f0.png", "f1.png"]],
    }
    messages, images = to_messages(rec, "f:5")
    assert [p["type"] for p in messages[0]["content"]] == ["video", "text", "image", "text", "video", "text"]
    assert images == ["a.png"]
    assert media(messages) == [("video", "clip1"), ("image", "a.png"), ("video", ["f0.png", "f1.png"])]
    qwen = {
        "messages": [
            {"role": "user", "content": [{"type": "video", "video": "clip1"}, {"type": "text", "text": "?"}]},
            {"role": "assistant", "content": "ok"},
        ]
    }
    assert media(to_messages(qwen, "f:6")[0]) == [("video", "clip1")]
    with pytest.raises(DataError, match=r"1 <video> tags but 2 videos \(fewer tags than videos\)"):
        to_messages(
            {**rec, "messages": [{"role": "user", "content": "<video><image>"}, rec["messages"][1]]}, "f:7"
        )
