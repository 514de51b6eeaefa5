"""Pure helpers of the benchmark: inputs, decode rates, token agreement, HLO counts, block sizes."""

import json
import struct

import numpy as np
import pytest

from lingshu_jax.bench import cli, decode, inputs, sections, suite, train
from lingshu_jax.model.config import BENCH_TOKENIZER_RANKS, preset


def test_bench_config_keeps_the_presets_special_ids_and_inputs_avoid_them():
    cfg = inputs.bench_config("bench-100m")
    assert cfg == preset("bench-100m") and inputs.bench_config("tiny") == preset("tiny")
    ids = set(cfg.special_token_ids().values())
    assert max(ids) < cfg.text.vocab_size == 32768 and min(ids) == BENCH_TOKENIZER_RANKS
    x = inputs.make_inputs(cfg, batch=1, seq=80, image_side=56)
    text = x["input_ids"][0, 6:]  # after <vision_start> <image_pad> x 4 <vision_end>
    assert text.max() < BENCH_TOKENIZER_RANKS  # ordinary BPE ids only
    assert inputs.make_text_inputs(cfg, batch=2, prompt_len=64)["input_ids"].max() < BENCH_TOKENIZER_RANKS


def test_bench_config_shrinks_depth():
    cfg = inputs.bench_config("qwen2.5-vl-7b", layers=2, vision_layers=5)
    assert cfg.text.num_hidden_layers == 2 and cfg.vision.depth == 5
    assert cfg.vision.fullatt_block_indexes == (4,)


def test_make_inputs_layout():
    cfg = preset("tiny")
    x = inputs.make_inputs(cfg, batch=2, seq=20, image_side=56)
    assert x["input_ids"].shape == (2, 20) and x["image_grid_thw"].tolist() == [[1, 4, 4]] * 2
    assert x["pixel_values"].shape == (32, 1176)
    row = x["input_ids"][0]
    assert row[0] == cfg.vision_start_token_id and row[5] == cfg.vision_end_token_id
    assert (row[1:5] == cfg.image_token_id).all()
    assert (x["mm_token_type_ids"] == (x["input_ids"] == cfg.image_token_id)).all()
    assert (x["labels"][:, :6] == -100).all() and (x["labels"][:, 6:] == x["input_ids"][:, 6:]).all()
    again = inputs.make_inputs(cfg, batch=2, seq=20, image_side=56)
    assert all(np.array_equal(x[k], again[k]) for k in x)  # every worker rebuilds the same batch


def _context(argv):
    opts, _ = cli.parse_args(argv)
    return sections.Context(opts, suite.resolve_sizes(opts), {}, "/tmp", None, print)


def test_attention_flag_overrides_the_suites_default():
    assert _context(["--suite", "gpu"]).spec()["attention_impl"] == "cudnn"
    assert _context(["--suite", "gpu", "--attention", "xla"]).spec()["attention_impl"] == "xla"
    assert _context(["--suite", "gpu", "--quick", "--allow-cpu"]).attention_impl == "xla"  # no cuDNN on CPU
    assert _context(["--suite", "cpu"]).spec()["attention_impl"] == "xla"
    with pytest.raises(SystemExit):
        cli.parse_args(["--attention", "flash"])


def test_mfu_against_the_measured_peak_only_where_the_machine_peak_is_another_figure():
    ctx = _context(["--suite", "gpu"])
    ctx.peak_flops, ctx.measured_peak_flops = 1000.0, 800.0  # vendor's, measured
    assert ctx._mfu(400.0, 1.0) == {"mfu": 0.4, "mfu_measured_peak": 0.5}
    ctx.peak_flops = 800.0  # CPU: the machine peak is the measured rate
    assert ctx._mfu(400.0, 1.0) == {"mfu": 0.5}


def test_write_checkpoint_saves_the_requested_dtype_at_the_bench_scale(tmp_path):
    from safetensors.torch import load_file

    inputs.write_checkpoint(preset("tiny").to_hf_dict(), str(tmp_path), "bfloat16")
    with open(tmp_path / "model.safetensors", "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    dtypes = {v["dtype"] for k, v in header.items() if k != "__metadata__"}
    assert dtypes == {"BF16"}
    weights = load_file(str(tmp_path / "model.safetensors"))
    matrix = weights[next(k for k in weights if k.endswith("lm_head.weight"))].float()
    assert abs(matrix.std().item() - inputs.BENCH_WEIGHT_STD) < 0.1 * inputs.BENCH_WEIGHT_STD


def test_decode_rates_and_invalid_rounds():
    r = decode.rates(
        [{"full_s": 2.0, "one_s": 0.5}, {"full_s": 0.4, "one_s": 0.5}], batch=2, max_new_tokens=4
    )
    assert r["decode_tok_s"] == [2 * 3 / 1.5, None]
    assert r["e2e_tok_s"] == [2 * 4 / 2.0, 2 * 4 / 0.4]
    assert r["step_s"][0] == 0.5


def test_token_agreement():
    a = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    b = np.array([[1, 2, 9, 4], [5, 6, 7, 8]])
    out = decode.token_agreement(a, b)
    assert out["common_prefix"] == [2, 4] and out["equal_fraction"] == 7 / 8


def test_equal_block_size():
    assert train._equal_block_size([0, 0, 1, 1, 2, 2]) == 2
    assert train._equal_block_size([0, 0, 1, 1, 1]) is None
    assert train._equal_block_size([0, 1, 0, 1]) is None  # not contiguous


def test_hlo_op_counts():
    text = """
    %fusion.1 = f32[4,8]{1,0} fusion(f32[4,8]{1,0} %p), kind=kLoop
    %dot.2 = f32[4,4]{1,0} dot(f32[4,8]{1,0} %a, f32[8,4]{1,0} %b)
    ROOT %tuple = (f32[4,4]{1,0}) tuple(%dot.2)
    """
    counts = train.hlo_op_counts(text)
    assert counts["fusion"] == 1 and counts["dot"] == 1 and counts["instructions"] == 3


def test_torch_thread_calibration_keeps_the_faster_count():
    import time

    from lingshu_jax.bench.common import calibrate_torch_threads

    class FakeTorch:
        threads = 2

        def set_num_threads(self, n):
            self.threads = n

    torch = FakeTorch()
    out = calibrate_torch_threads(torch, lambda: time.sleep(0.002 if torch.threads == 1 else 0.02), (1, 2))
    assert out["threads"] == 1 and torch.threads == 1
    assert set(out["median_s"]) == {"1", "2"}
