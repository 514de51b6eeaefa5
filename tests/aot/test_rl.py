"""The GRPO fit report compiles every program of a rollout step (generation, log-probs, accumulation,
update) with the trainer's own code for a TPU slice, on inputs shaped as the trainer builds them."""

import json

import jax
import numpy as np
import pytest

from configs import rl_demo
from lingshu_jax import sharding
from lingshu_jax.aot.rl import abstract_inputs, format_rl_report, rl_fit_report, rollout_shapes
from lingshu_jax.aot.targets import parse_target
from lingshu_jax.demo import write_demo_assets
from lingshu_jax.infer import batching
from lingshu_jax.infer.generate import prepare_generation_batch
from lingshu_jax.model.config import preset_config_dict
from lingshu_jax.processing import Processor
from lingshu_jax.rl.data import parse_record
from lingshu_jax.rl.rollout import Rollout, encode_prompt
from lingshu_jax.rl.trainer import GRPOSettings
from lingshu_jax.train.program import build_train_program
from tests.rl import toy

GRID = (1, 8, 8)  # one 112 x 112 image per prompt: 64 patches


def _tiny_rl(fsdp: int = 4):
    c = rl_demo.get_config("root=/nonexistent,lr_vit=3e-4,lr_proj=3e-4")  # every parameter trains
    c.init_from = ""
    c.model = preset_config_dict("tiny")
    c.mesh.fsdp = fsdp
    c.rl.update(
        dict(
            rollout_prompts=4,
            mini_batch_prompts=2,
            group_size=4,
            micro_batch_rows=4,
            rows_per_generate=8,
            max_new_tokens=8,
            max_prompt_tokens=64,
            prompt_bucket=64,
            response_bucket=8,
            patch_bucket=64,
        )
    )
    return c


def test_grpo_programs_compile_for_a_v5p_slice_with_each_phase_peak_and_calls_per_step():
    """Needs libtpu (setup.py extra [tpu]); without it this fails with the install command, it never skips."""
    c = _tiny_rl()
    c.model.attention_impl = "splash"  # as the recipe: the stream in one chunk per device
    r = rl_fit_report(c, parse_target("v5p:2x2x1"), image_grid=GRID)
    json.dumps(r)
    progs = r["programs"]
    assert list(progs) == ["generate", "logprob", "accumulate", "update"] and r["fits"]
    assert r["config"]["vision_chunks"] == 4 and r["config"]["shapes"]["micro_patches"] % 4 == 0
    # 4 prompts x 4 samples = 16 rows: 2 prompts per generation call, micro-batches of 4 rows, old + ref
    # log-probs, one epoch of 2 mini-batches
    calls = {k: p["calls_per_step"] for k, p in progs.items()}
    assert calls == {"generate": 2, "logprob": 8, "accumulate": 4, "update": 2}
    res = r["memory"]["resident"]
    assert res["optimizer_state"] == pytest.approx(2 * res["params"], rel=0.05)  # Adam mu, nu
    assert res["reference_params"] == res["params"] and res["accumulator"] >= res["params"]
    for p in progs.values():
        assert p["peak"] == p["program_total"] + p["resident_bytes"]
    assert progs["generate"]["temporaries"] > 0 and progs["accumulate"]["temporaries"] > 0
    assert progs["update"]["resident_bytes"] == res["reference_params"]
    assert r["memory"]["peak"] == max(p["peak"] for p in progs.values())
    # the decode loop (steps 1..7, stopping early when every row is done) counts as its maximum: read from
    # its condition `step < 8` (an upper bound by one step), or when unreadable counted as 7
    loops = progs["generate"]["loops"]
    assert 8 in loops["trip_counts"] or loops.get("unknown_counted_as") == 7
    assert progs["accumulate"]["collectives"]["all-gather"]["bytes"] > 0  # fsdp gathers the weights
    assert r["step"]["estimate_s"] == pytest.approx(
        sum(p["time_s"] * p["calls_per_step"] for p in progs.values())
    )
    text = format_rl_report(r)
    assert "FITS" in text and "generate" in text and "assumptions" in text


def test_a_grpo_config_the_trainer_would_refuse_is_refused_before_compiling():
    c = _tiny_rl(fsdp=4)
    c.rl.micro_batch_rows = 2  # 2 rows of a micro-batch cannot split over 4 chips
    with pytest.raises(ValueError, match="micro_batch_rows=2 must be a multiple of the mesh's batch shards"):
        rl_fit_report(c, parse_target("v5p:2x2x1"), image_grid=GRID)


def _rollout(root: str, cfg):
    """A rollout of 2 prompts x 4 samples with images (one text-only prompt), tokens made up: no sampling."""
    images = toy.write_images(root, per_colour=1)
    proc = Processor.from_pretrained(write_demo_assets(f"{root}/assets"))
    records = [
        {
            "messages": [{"role": "user", "content": "<image>Colour?"}],
            "images": [images[0][0]],
            "answer": "red",
        },
        {"messages": [{"role": "user", "content": "Is red a colour?"}], "answer": "yes"},
    ]
    prompts = [parse_record(r, f"test:{i}", root, "") for i, r in enumerate(records)]
    encoded = [encode_prompt(proc, p) for p in prompts]
    rows = 2 * 4
    tokens = np.full((rows, 8), 5, np.int32)
    lengths = np.arange(rows, dtype=np.int32) % 8 + 1
    ro = Rollout(prompts, encoded, 4, tokens, lengths, prompt_bucket=64, response_bucket=8, patch_bucket=64)
    ro.old_logp = ro.ref_logp = np.zeros((rows, ro.resp_len), np.float32)
    ro.advantages = np.zeros(rows, np.float32)
    return ro, encoded, int(proc.tokenizer.pad_token_id)


def test_abstract_inputs_have_the_keys_dtypes_and_ranks_of_the_trainers_batches(tmp_path):
    """The report compiles what the trainer runs: its abstract batches match `Rollout.model_batch` and
    `prepare_generation_batch` of real prompts (with an image and without), key for key."""
    c = _tiny_rl(fsdp=1)
    program = build_train_program(c, sharding.make_mesh(c.mesh, jax.devices()[:1]))
    s = GRPOSettings.from_config(c.rl)
    specs = abstract_inputs(program, s, rollout_shapes(s, program.model_config, 1, GRID))
    cfg = program.model_config
    ro, encoded, pad = _rollout(str(tmp_path), cfg)
    real_update = ro.model_batch(cfg, np.arange(4), pad, ro.patch_budget(4))
    real_gen, _ = prepare_generation_batch(cfg, batching.collate(encoded, pad), pad)

    def kinds(batch):
        return {k: (np.dtype(v.dtype), np.ndim(v)) for k, v in batch.items()}

    assert kinds(specs["accumulate"][2]) == kinds(real_update)
    assert kinds(specs["generate"][1]) == kinds(real_gen)
    logprob = {k: v for k, v in real_update.items() if k not in ("old_logp", "ref_logp", "advantages")}
    assert kinds(specs["logprob"][1]) == kinds(logprob)
