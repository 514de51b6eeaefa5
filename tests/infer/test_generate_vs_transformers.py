"""Greedy generation is token-identical to transformers' `generate` (tiny random model, fp32, eager).

Both sides get the same processor outputs. Also: cached decode logits equal the no-cache forward, stop
tokens and max_new_tokens are honoured, sampling is reproducible, one compile serves a shape bucket.
"""

import jax
import numpy as np
import pytest
import torch
import transformers

from lingshu_jax.infer.generate import TRACES, generate_ids, prepare_generation_batch, stream_chunks
from lingshu_jax.infer.sampling import SamplingConfig
from tests.infer.conftest import PAD, image, user

N = 8
CASES = {
    "text_only": lambda: [[user("What is the most likely diagnosis?")]],
    "one_image": lambda: [[user(image(84, 56, 1), "Describe the lesion.")]],
    "two_images": lambda: [[user(image(101, 67, 2), "and", image(45, 150, 3), "Compare.")]],
    "left_padded_batch": lambda: [
        [user(image(56, 56, 5), "Short?")],
        [user("A much longer question about", image(90, 60, 6), "this scan, with more words in it.")],
        [user("And a text-only row.")],
    ],
}


def _hf_generate(hf_model, inputs, n, eos, with_logits=False):
    """transformers' greedy generate -> new tokens [B, T] (and the logits of each step [B, T, V])."""
    config = transformers.GenerationConfig(
        do_sample=False,
        max_new_tokens=n,
        eos_token_id=eos,
        pad_token_id=PAD,
        bos_token_id=PAD,
        output_logits=True,
        return_dict_in_generate=True,
    )
    with torch.no_grad():
        out = hf_model.generate(
            **{k: torch.from_numpy(np.asarray(v)) for k, v in inputs.items()}, generation_config=config
        )
    tokens = out.sequences[:, inputs["input_ids"].shape[1] :].numpy()
    return (tokens, torch.stack(out.logits, 1).numpy()) if with_logits else tokens


def _ours(model, inputs, n=N, stop=(), **kw):
    return generate_ids(model.config, model.params, inputs, n, stop_token_ids=stop, pad_token_id=PAD, **kw)


@pytest.mark.parametrize("case", sorted(CASES))
def test_greedy_tokens_and_step_logits_equal_transformers(hf_model, ours, processor, case):
    inputs = processor(CASES[case]())
    out = _ours(ours, inputs, return_logits=True)
    assert out["tokens"].shape == (len(inputs["input_ids"]), N)  # max_new_tokens honoured, no stop
    np.testing.assert_array_equal(out["lengths"], N)
    unused = next(t for t in (1002, 1021, 1020, 1019) if t not in out["tokens"])  # so transformers runs N too
    tokens, logits = _hf_generate(hf_model, inputs, N, unused, with_logits=True)
    np.testing.assert_array_equal(out["tokens"], tokens)
    assert np.abs(out["logits"] - logits).max() <= 1e-4  # random tiny models repeat tokens: check logits too


def test_vision_attention_chunks_lay_each_rows_images_in_its_chunk_and_generate_the_same(
    hf_model, ours, processor
):
    """model.vision_attention_chunks=2 on 3 rows: generation pads the rows to 4 and lays the stream out in 2
    chunks (each holding its rows' whole images), and the step logits stay transformers'."""
    import lingshu_jax

    inputs = processor(CASES["left_padded_batch"]())
    chunked = lingshu_jax.LingshuModel(ours.config.replace(vision_attention_chunks=2), ours.params)
    assert stream_chunks(chunked.config, mesh=None, rules=None) == 2
    batch, rows = prepare_generation_batch(chunked.config, inputs, PAD, vision_chunks=2)
    segments, half = batch["frame_segments"], len(batch["frame_segments"]) // 2
    assert rows == 3 and batch["input_ids"].shape[0] == 4 and segments[half - 1] != segments[half]
    out = _ours(chunked, inputs, return_logits=True)
    unused = next(t for t in (1002, 1021, 1020, 1019) if t not in out["tokens"])
    tokens, logits = _hf_generate(hf_model, inputs, N, unused, with_logits=True)
    np.testing.assert_array_equal(out["tokens"], tokens)
    assert np.abs(out["logits"] - logits).max() <= 1e-4


def test_video_prompt_tokens_equal_transformers(hf_model, ours, processor):
    frames = [image(56, 84, 10 + i) for i in range(4)]
    inputs = processor(
        [
            {
                "role": "user",
                "content": [{"type": "video", "video": frames}, {"type": "text", "text": "Describe."}],
            }
        ],
        video_fps=2.0,
    )
    assert "second_per_grid_ts" in inputs
    out = _ours(ours, inputs)
    unused = next(t for t in (1002, 1021, 1020, 1019) if t not in out["tokens"])
    np.testing.assert_array_equal(out["tokens"], _hf_generate(hf_model, inputs, N, unused))


def test_stop_token_ends_each_row_and_pads_like_transformers(hf_model, ours, processor):
    inputs = processor(CASES["left_padded_batch"]())
    free = _ours(ours, inputs)["tokens"]
    stop = int(free[0, 2])  # a token row 0 emits at step 2 (at the latest)
    out = _ours(ours, inputs, stop=(stop,))
    ref = _hf_generate(hf_model, inputs, N, stop)
    np.testing.assert_array_equal(out["tokens"], ref)
    for row, n in zip(out["tokens"], out["lengths"]):
        hits = np.flatnonzero(row[:n] == stop)
        assert n == N or (len(hits) == 1 and hits[0] == n - 1)  # stops right after the first stop token
        assert (row[n:] == PAD).all()
    assert out["lengths"][0] <= 3


def test_loop_ends_when_every_row_stopped(ours, processor):
    inputs = processor(CASES["text_only"]())
    first = int(_ours(ours, inputs)["tokens"][0, 0])
    out = _ours(ours, inputs, n=50, stop=(first,))
    assert out["tokens"].shape == (1, 1) and out["lengths"].tolist() == [1]


def test_cached_decode_logits_equal_the_full_forward(ours, processor):
    inputs = processor(CASES["left_padded_batch"]())
    out = _ours(ours, inputs, return_logits=True)
    s = inputs["input_ids"].shape[1]
    full = {k: v for k, v in inputs.items() if k != "mm_token_type_ids"}
    full["input_ids"] = np.concatenate([inputs["input_ids"], out["tokens"]], axis=1)
    full["attention_mask"] = np.concatenate([inputs["attention_mask"], np.ones_like(out["tokens"])], axis=1)
    ref = np.asarray(ours(**full).logits)[:, s - 1 : s - 1 + N]  # position s-1+t predicts token t
    assert np.abs(out["logits"] - ref).max() <= 1e-4


def test_sampling_is_reproducible_and_stays_inside_the_filters(ours, processor):
    inputs = processor(CASES["left_padded_batch"]())
    cfg = SamplingConfig(temperature=1.0, top_k=20, top_p=0.9)
    a = _ours(ours, inputs, sampling=cfg, rng=jax.random.key(3), return_logits=True)
    b = _ours(ours, inputs, sampling=cfg, rng=jax.random.key(3))
    c = _ours(ours, inputs, sampling=cfg, rng=jax.random.key(4))
    np.testing.assert_array_equal(a["tokens"], b["tokens"])
    assert (a["tokens"] != c["tokens"]).any()
    picked = np.take_along_axis(a["logits"], a["tokens"][..., None], axis=-1)
    rank = (a["logits"] > picked).sum(-1)
    assert (rank < 20).all()


def test_prompts_in_one_length_bucket_compile_once(ours, processor):
    _ours(ours, processor([[user("short")]]), n=3)
    before = sum(TRACES.values())
    out = _ours(ours, processor([[user("a somewhat longer prompt, still inside the first bucket")]]), n=3)
    assert sum(TRACES.values()) == before and out["tokens"].shape == (1, 3)


def test_right_padded_inputs_give_the_left_padded_result(ours, processor):
    left = processor(CASES["left_padded_batch"](), padding_side="left")
    right = processor(CASES["left_padded_batch"](), padding_side="right")
    np.testing.assert_array_equal(_ours(ours, right)["tokens"], _ours(ours, left)["tokens"])


def test_bfloat16_compute_generates(tiny_hf_dir, processor):
    from lingshu_jax.api import from_pretrained

    bf16 = from_pretrained(tiny_hf_dir, dtype="bfloat16")
    out = _ours(bf16, processor(CASES["one_image"]()), n=4)
    assert out["tokens"].shape == (1, 4) and out["lengths"].tolist() == [4]


def test_invalid_max_new_tokens_is_rejected(ours, processor):
    with pytest.raises(ValueError, match="max_new_tokens"):
        _ours(ours, processor(CASES["text_only"]()), n=0)


def test_stream_chunks_without_vision_attention_chunks_is_one_chunk_per_process_on_any_host_count(ours):
    """vision_attention_chunks=1 (off) lays one chunk per process however many processes share the batch
    (multi-host GRPO with the default model config); 2 chunks split one per process over 2 hosts, and a
    count that does not divide over the hosts is refused with the value named."""
    import pytest

    assert [stream_chunks(ours.config, mesh=None, rules=None, hosts=h) for h in (1, 2, 4)] == [1, 1, 1]
    two = ours.config.replace(vision_attention_chunks=2)
    assert stream_chunks(two, mesh=None, rules=None, hosts=2) == 1
    with pytest.raises(ValueError, match="vision_attention_chunks=2 does not divide over 4"):
        stream_chunks(two, mesh=None, rules=None, hosts=4)
