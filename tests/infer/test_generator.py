"""Generator (texts, chat), LingshuModel.generate / generate_text and the evaluation adapter."""

import pytest

from lingshu_jax.evals.prompts import build_messages
from lingshu_jax.evals.types import EvalItem
from lingshu_jax.infer import (
    ChatSession,
    Generator,
    make_generate_fn,
    run_repl,
)
from lingshu_jax.infer.eval_adapter import item_messages, length_batches
from tests.infer.conftest import image, user

MAX_NEW = 6


@pytest.fixture(scope="module")
def gen(ours):
    return Generator.from_model(ours)


def test_generate_decodes_the_generated_ids(gen, processor):
    convs = [[user(image(56, 56, 1), "What is shown?")], [user("Text only, a little longer.")]]
    texts = gen.generate_text(convs, max_new_tokens=MAX_NEW)
    out = gen.generate_ids(processor(convs), MAX_NEW)
    assert texts == [processor.decode(r[:n]) for r, n in zip(out["tokens"], out["lengths"])]
    assert gen.stop_token_ids == processor.tokenizer.eos_token_ids and gen.pad_token_id == 1000


def test_prompt_string_with_images_equals_the_conversation(gen, tmp_path):
    path = str(tmp_path / "x.png")
    image(70, 42, 2).save(path)
    a = gen.generate_text("Describe.", images=[path], max_new_tokens=MAX_NEW)
    b = gen.generate_text(
        [
            {
                "role": "user",
                "content": [{"type": "image", "image": path}, {"type": "text", "text": "Describe."}],
            }
        ],
        max_new_tokens=MAX_NEW,
    )
    assert a == b and len(a) == 1
    with pytest.raises(ValueError, match="images= is only accepted with a prompt string"):
        gen.generate_text([[user("x")]], images=[path])


def test_chat_appends_the_reply_and_keeps_the_image_in_context(gen, tmp_path):
    path = str(tmp_path / "c.png")
    image(56, 84, 3).save(path)
    session = ChatSession(gen, max_new_tokens=MAX_NEW)
    replies = []
    assert (
        run_repl(
            session,
            [f":image {path}\n", "What modality?\n", ":image /no/such.png\n", "And?\n", "\n", "never read\n"],
            emit=replies.append,
            warn=replies.append,
        )
        == 2
    )
    assert "no such file" in replies[1]
    msgs = session.messages
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant"]
    assert msgs[1]["content"] == replies[0] and msgs[3]["content"] == replies[2]
    assert msgs[0]["content"][0] == {"type": "image", "image": path}
    # the second turn saw the whole conversation
    again, _ = gen.chat(msgs[:3], max_new_tokens=MAX_NEW, seed=1)
    assert again == replies[2]


def test_model_generate_ids_and_text_agree(ours, processor):
    inputs = processor([[user("Hello?")]])
    out = ours.generate(**inputs, max_new_tokens=MAX_NEW)
    assert out["tokens"].shape[0] == 1 and 1 <= out["lengths"][0] <= MAX_NEW
    text = ours.generate_text("Hello?", max_new_tokens=MAX_NEW)
    assert isinstance(text, str) and text == processor.decode(out["tokens"][0][: out["lengths"][0]])
    assert ours.generate_text(["Hello?", "Bye?"], max_new_tokens=MAX_NEW)[0] == text


def test_length_batches_groups_similar_lengths():
    assert length_batches([5, 1, 9, 2, 7], 2) == [[1, 3], [0, 4], [2]]
    with pytest.raises(ValueError, match="batch_size"):
        length_batches([1], 0)


def test_eval_generate_fn_matches_one_by_one_generation_in_item_order(gen, tiny_hf_dir, tmp_path):
    paths = []
    for i, (w, h) in enumerate([(56, 56), (84, 56), (42, 98)]):
        paths.append(str(tmp_path / f"im{i}.png"))
        image(w, h, 10 + i).save(paths[-1])
    items = [
        EvalItem(
            "a",
            "VQA_RAD",
            "",
            "closed",
            (paths[0],),
            "q",
            "yes",
            prompt="Is there an effusion?",
            messages=build_messages("Is there an effusion?", (paths[0],)),
        ),
        EvalItem("b", "MedQA", "", "mc", (), "q", "A", prompt="A long text-only question " * 4),
        EvalItem(
            "c", "VQA_RAD", "", "open", (paths[1], paths[2]), "q", "x", prompt="Compare the two images."
        ),
    ]
    generate_fn = make_generate_fn(gen, max_new_tokens=MAX_NEW, batch_size=2)
    got = generate_fn(items)
    expected = [gen.generate_text([item_messages(it)], max_new_tokens=MAX_NEW)[0] for it in items]
    assert got == expected
    assert (
        make_generate_fn(tiny_hf_dir, max_new_tokens=MAX_NEW, batch_size=3)(items) == expected
    )  # from a path
    with pytest.raises(ValueError, match="no messages, prompt or question"):
        generate_fn([EvalItem("d", "X", "", "open", (), "", "")])
