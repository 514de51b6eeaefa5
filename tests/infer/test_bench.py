"""decode_throughput runs both sides on the same prompts and reports positive rates."""

from lingshu_jax.infer.bench import decode_throughput


def test_decode_throughput_reports_both_sides(tiny_hf_dir):
    out = decode_throughput(tiny_hf_dir, batch_size=2, prompt_len=16, max_new_tokens=4)
    for side in ("ours", "transformers"):
        assert out[side]["e2e_tok_s"] > 0 and out[side]["decode_tok_s"] > 0
        assert out[side]["full_s"] > 0 and out[side]["prefill_s"] > 0
    assert out["setup"]["batch_size"] == 2 and out["setup"]["model_dir"] == tiny_hf_dir
