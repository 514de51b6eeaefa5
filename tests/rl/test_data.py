"""RL prompt data: record layouts, the reasoning prompt, yes/no downsampling, the step-determined order."""

import json

import numpy as np
import pytest

from lingshu_jax.evals import prompts as eval_prompts
from lingshu_jax.rl.data import (
    DEFAULT_FORMAT_PROMPT,
    PromptSchedule,
    downsample_yes_no,
    load_prompts,
    parse_record,
    read_prompts,
)


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_question_record_gets_the_eval_reasoning_prompt_then_the_format_prompt(tmp_path):
    (tmp_path / "ct.png").write_bytes(b"")
    rec = {
        "question": "Which organ?",
        "images": ["ct.png"],
        "answer": "spleen",
        "question_type": "multiple_choice",
        "options": ["liver", "spleen"],
    }
    p = parse_record(rec, "f.jsonl:3", str(tmp_path))
    image, text = p.messages[0]["content"]
    assert image == {"type": "image", "image": str(tmp_path / "ct.png")}
    expected = eval_prompts.multiple_choice_prompt("Which organ?", ["A. liver", "B. spleen"], reasoning=True)
    assert text["text"] == expected + " " + DEFAULT_FORMAT_PROMPT
    assert p.reference == {
        "answer": "B",
        "question_type": "mc",
        "options": ("liver", "spleen"),
    }  # text -> letter


def test_messages_record_keeps_its_turns_and_drops_a_trailing_answer(tmp_path):
    rec = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "<image>Is there a fracture?"},
            {"role": "assistant", "content": "yes"},
        ],
        "images": ["x.png"],
        "answer": "yes",
        "question_type": "yes_no",
    }
    p = parse_record(rec, "f:1", str(tmp_path), format_prompt="Think first.")
    assert [m["role"] for m in p.messages] == ["system", "user"]
    assert p.messages[1]["content"][-1]["text"] == "Is there a fracture? Think first."
    assert p.reference["question_type"] == "yesno" and p.num_images == 1


@pytest.mark.parametrize(
    "record, message",
    [
        ({"question": "q"}, "no 'answer'"),
        ({"question": "q", "answer": "x", "question_type": "essay"}, "question_type 'essay'"),
        ({"question": "q", "answer": "maybe", "question_type": "yes_no"}, "not 'yes' or 'no'"),
        ({"question": "q", "answer": "E", "options": ["a", "b"]}, "neither a letter"),
        ({"question": "q", "answer": "a", "images": ["../../etc/passwd"]}, "outside the dataset root"),
    ],
)
def test_bad_records_name_file_and_line(tmp_path, record, message):
    path = _write(tmp_path / "p.jsonl", [{"question": "ok", "answer": "x"}, record])
    with pytest.raises(ValueError, match=f"p.jsonl:2: .*{message}"):
        read_prompts([path], str(tmp_path))


def test_yes_no_downsampling_keeps_about_the_fraction_and_every_other_type(tmp_path):
    records = [
        {"question": f"q{i}", "answer": "yes" if i % 2 else "no", "question_type": "yes_no"}
        for i in range(4000)
    ]
    records += [{"question": f"c{i}", "answer": "liver"} for i in range(300)]
    path = _write(tmp_path / "p.jsonl", records)
    kept = load_prompts({"paths": [path], "root": str(tmp_path), "yes_no_keep": 0.05}, seed=3)
    yes_no = sum(p.question_type == "yesno" for p in kept)
    assert 150 <= yes_no <= 250 and len(kept) - yes_no == 300
    again = downsample_yes_no(read_prompts([path], str(tmp_path)), 0.05, seed=3)
    assert [p.where for p in again] == [p.where for p in kept]  # deterministic


def test_schedule_is_a_function_of_the_step_and_covers_each_epoch_once():
    s = PromptSchedule(num_prompts=10, batch=4, seed=1)
    first_epoch = np.concatenate([s.indices(1), s.indices(2), s.indices(3)])[:10]
    assert sorted(first_epoch) == list(range(10))
    assert np.array_equal(s.indices(3), PromptSchedule(10, 4, seed=1).indices(3))  # no iterator state
    assert s.position(4) == 12 and len(s.indices(3)) == 4  # step 3 crosses into epoch 1
    assert list(PromptSchedule(5, 2, shuffle=False).indices(3)) == [4, 0]


def test_a_prompt_image_beyond_the_vision_span_is_refused_naming_its_record(tmp_path):
    """xla vision attention bands its full layers over `vision_attention_span` rows: an image larger than
    that is refused before sampling, naming the record and the knobs, instead of attending to part of it."""
    from PIL import Image

    from lingshu_jax.demo import write_demo_assets
    from lingshu_jax.model.config import preset
    from lingshu_jax.processing import Processor
    from lingshu_jax.rl.rollout import check_vision_spans, encode_prompt, rl_processor

    Image.new("RGB", (224, 224), (200, 10, 10)).save(tmp_path / "big.png")  # 16 x 16 patches: 256 rows
    record = {
        "messages": [{"role": "user", "content": "<image>Colour?"}],
        "images": ["big.png"],
        "answer": "red",
    }
    prompt = parse_record(record, "rl.jsonl:3", str(tmp_path), "")
    proc = Processor.from_pretrained(write_demo_assets(str(tmp_path / "assets")))
    enc = [encode_prompt(proc, prompt)]
    cfg = preset("tiny").replace(attention_impl="xla", vision_attention_span=256)
    check_vision_spans(cfg, [prompt], enc)  # fits exactly
    with pytest.raises(ValueError, match=r"rl.jsonl:3: .*takes 256 vision-stream rows.*span=192.*max_pixels"):
        check_vision_spans(cfg.replace(vision_attention_span=192), [prompt], enc)
    # config.data.max_pixels caps the processor's resolution: the same image then fits a 64-row span
    capped = rl_processor(str(tmp_path / "assets"), max_pixels=112 * 112)
    enc = [encode_prompt(capped, prompt)]
    assert np.asarray(enc[0]["image_grid_thw"]).tolist() == [[1, 8, 8]]
    check_vision_spans(cfg.replace(vision_attention_span=64), [prompt], enc)
