"""Bad-input policy: one case per data-error class, as a counted skip (default) and as an error naming
file:line; configuration errors always raise."""

import os
import re

import pytest

from lingshu_jax.data import DataConfig, ErrorPolicy, make_pipeline

from .helpers import text_only, vqa, write_bomb_png, write_jsonl, write_png


def _cases(root):
    write_png(os.path.join(root, "ok.png"), (56, 56))
    with open(os.path.join(root, "corrupt.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    write_bomb_png(os.path.join(root, "bomb.png"))
    write_png(os.path.join(root, "..", "outside.png"), (56, 56))
    big = write_png(os.path.join(root, "big.png"), (28, 448))  # 4 windows of 64: 256 stream rows > 128
    return {
        "missing_image": vqa("nope.png"),
        "corrupt_image": vqa("corrupt.png"),
        "decompression_bomb": vqa("bomb.png"),
        "path_escape": vqa("../outside.png"),
        "malformed_json": '{"messages": [',
        "bad_record": {"prompt": "hi"},
        "unknown_role": {
            "messages": [{"role": "tool", "content": "x"}, {"role": "assistant", "content": "y"}]
        },
        "empty_assistant": {
            "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": " "}]
        },
        "image_tag_mismatch/more_tags": {
            "messages": [
                {"role": "user", "content": "<image><image>?"},
                {"role": "assistant", "content": "y"},
            ],
            "images": ["ok.png"],
        },
        "image_tag_mismatch/fewer_tags": {
            "messages": [{"role": "user", "content": "<image>?"}, {"role": "assistant", "content": "y"}],
            "images": ["ok.png", "ok.png"],
        },
        "too_many_patches": vqa(os.path.basename(big)),
        "too_long": text_only(q="word " * 300),
        "no_labels": {"messages": [{"role": "user", "content": "hi"}]},
    }


CASES = [
    "missing_image",
    "corrupt_image",
    "decompression_bomb",
    "path_escape",
    "malformed_json",
    "bad_record",
    "unknown_role",
    "empty_assistant",
    "image_tag_mismatch/more_tags",
    "image_tag_mismatch/fewer_tags",
    "too_many_patches",
    "too_long",
    "no_labels",
]
MESSAGES = {
    "image_tag_mismatch/more_tags": "2 <image> tags but 1 images",
    "image_tag_mismatch/fewer_tags": "1 <image> tags but 2 images",
    "path_escape": "outside the dataset root",
    "decompression_bomb": "refused before decoding",
    "malformed_json": "invalid JSON",
}


def _pipeline(tmp_path, case, processor, model_config, on_error):
    root = tmp_path / "ds"
    root.mkdir(exist_ok=True)
    bad = _cases(str(root))[case]
    path = write_jsonl(root / "data.jsonl", [text_only(), bad, vqa("ok.png")])
    cfg = DataConfig.from_dict(
        {
            "sources": [{"name": "d", "path": path}],
            "seq_len": 128,
            "batch_size": 4,
            "patch_budget": 128,
            "shuffle": False,
            "on_error": on_error,
        }
    )
    return make_pipeline(cfg, None, processor, model_config), path


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_skipped_and_counted(tmp_path, case, processor, model_config):
    it, _ = _pipeline(tmp_path, case, processor, model_config, "skip")
    next(it)
    kind = case.split("/")[0]
    assert it.counters[f"skipped/{kind}"] == 1
    assert it.counters["samples"] == 2 and it.counters["segments"] == 2


@pytest.mark.parametrize("case", CASES)
def test_bad_input_raises_with_file_and_line(tmp_path, case, processor, model_config):
    it, path = _pipeline(tmp_path, case, processor, model_config, "error")
    kind = case.split("/")[0]
    with pytest.raises(ValueError, match=re.escape(f"{path}:2: ") + r".*" + re.escape(f"[{kind}]")) as e:
        next(it)
    assert MESSAGES.get(case, "") in str(e.value)


def test_policy_overrides_per_class(tmp_path, processor, model_config):
    policy = ErrorPolicy("skip", {"missing_image": "error"})
    assert policy("missing_image") == "error" and policy("corrupt_image") == "skip"
    with pytest.raises(ValueError, match="unknown data error class 'nope'"):
        ErrorPolicy("skip", {"nope": "error"})


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"patch_budget": 30}, "patch_budget"),
        ({"train_on": "user"}, "train_on"),
        ({"truncation": "cut"}, "truncation"),
        ({"on_error": "ignore"}, "on_error"),
        ({"seqlen": 1}, "unknown keys"),
        ({"pixel_dtype": "float16"}, "pixel_dtype"),
        ({"pixel_transport": "uint8"}, "now data.pixel_dtype"),
    ],
)
def test_config_errors_raise(tmp_path, bad, match):
    path = write_jsonl(tmp_path / "d.jsonl", [text_only()])
    with pytest.raises(ValueError, match=match):
        DataConfig.from_dict({"sources": [{"name": "d", "path": path}], **bad})


def test_missing_root_is_a_config_error(tmp_path, processor, model_config):
    path = write_jsonl(tmp_path / "d.jsonl", [text_only()])
    cfg = DataConfig.from_dict({"sources": [{"name": "d", "path": path, "root": str(tmp_path / "none")}]})
    with pytest.raises(ValueError, match="not a directory"):
        make_pipeline(cfg, None, processor, model_config)
