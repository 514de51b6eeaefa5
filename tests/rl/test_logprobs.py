"""The update sees exactly what the sampler saw: per-token log-probs, importance ratio and KL at step start.

Prompts carry several images of different sizes (and one is text only), prompts differ in length (left
padding), responses in length (right padding: a set of "stop" tokens ends samples early), and batches mix
rows of different prompts with all-padding rows (-1) and one shared vision patch budget. A random tiny
model in float32: the training forward's log-probs must equal those of the logits the decode loop sampled
from (1e-5), the PPO ratio of the first mini-batch (rows reshuffled into other micro-batches than the
old-log-prob pass used) must be 1, and the k3 KL must be 0 when the reference is the policy.
"""

import dataclasses
import functools

import jax
import numpy as np
import pytest

from lingshu_jax import sharding
from lingshu_jax.demo import write_demo_assets
from lingshu_jax.infer.sampling import SamplingConfig
from lingshu_jax.model.config import preset
from lingshu_jax.model.vlm import Qwen25VL, init_params
from lingshu_jax.processing import Processor
from lingshu_jax.rl.data import parse_record
from lingshu_jax.rl.loss import grpo_loss
from lingshu_jax.rl.rollout import Rollout, encode_prompt, sample_responses
from lingshu_jax.rl.trainer import response_log_probs
from tests.rl import toy

GROUP, NEW_TOKENS, MICRO = 3, 7, 4


@pytest.fixture(scope="module")
def rollout(tmp_path_factory):
    """(model config, params, forward fn, Rollout with behaviour_logp) for 4 prompts x 3 samples."""
    root = str(tmp_path_factory.mktemp("rl_logprobs"))
    images = toy.write_images(root, per_colour=2)
    proc = Processor.from_pretrained(write_demo_assets(f"{root}/assets"))
    records = [  # several images per prompt, one text-only prompt, different text lengths
        {
            "messages": [{"role": "user", "content": "<image><image>Same colour?"}],
            "images": [images[0][0], images[3][0]],
            "answer": "no",
            "question_type": "closed",
        },
        {
            "messages": [{"role": "user", "content": "<image>What colour is shown in this picture, please?"}],
            "images": [images[5][0]],
            "answer": "blue",
            "question_type": "closed",
        },
        {
            "messages": [{"role": "user", "content": "Is red a colour?"}],
            "answer": "yes",
            "question_type": "closed",
        },
        {
            "messages": [{"role": "user", "content": "<image><image><image>Colours?"}],
            "images": [images[1][0], images[2][0], images[7][0]],
            "answer": "red",
            "question_type": "closed",
        },
    ]
    prompts = [parse_record(r, f"test:{i}", root, "") for i, r in enumerate(records)]
    encoded = [encode_prompt(proc, p) for p in prompts]
    cfg = preset("tiny")
    params = init_params(cfg, jax.random.key(0))
    pad = proc.tokenizer.pad_token_id
    # Many stop tokens so that responses end at different lengths (right padding inside the batch).
    stops = tuple(cfg.eos_token_ids) + tuple(range(300, 300 + cfg.text.vocab_size // 6))
    sampling = SamplingConfig(temperature=0.9)
    tokens, lengths, behaviour = sample_responses(
        cfg, params, encoded, GROUP, NEW_TOKENS, sampling, jax.random.key(1), stops, pad, behaviour_logp=True
    )
    ro = Rollout(
        prompts,
        encoded,
        GROUP,
        tokens,
        lengths,
        prompt_bucket=16,
        response_bucket=4,
        patch_bucket=32,
        max_new_tokens=NEW_TOKENS,
        behaviour_logp=behaviour,
    )
    forward = jax.jit(functools.partial(response_log_probs, Qwen25VL(cfg), sampling.temperature))
    return cfg, params, pad, forward, ro


def _log_probs(cfg, params, pad, forward, ro, order, budget):
    """[R, resp_len] log-probs over micro-batches of MICRO rows taken in `order` (padded with -1 rows)."""
    out = np.zeros((ro.num_rows, ro.resp_len), np.float32)
    for start in range(0, len(order), MICRO):
        rows = np.full(MICRO, -1)
        chunk = order[start : start + MICRO]
        rows[: len(chunk)] = chunk
        batch = ro.model_batch(cfg, rows, pad, budget)
        out[chunk] = np.asarray(forward(params, batch))[: len(chunk), : ro.resp_len]
    return out


def test_rollout_has_image_prompts_and_padded_responses(rollout):
    ro = rollout[-1]
    assert len(set(ro.lengths.tolist())) > 1 and ro.lengths.min() < NEW_TOKENS  # right padding exercised
    assert len({len(e["input_ids"][0]) for e in ro.encoded}) == len(ro.encoded)  # left padding exercised
    images = [int(np.asarray(e.get("image_grid_thw", np.zeros((0, 3)))).shape[0]) for e in ro.encoded]
    assert images == [2, 1, 0, 3]


def test_training_forward_log_probs_equal_the_samplers_in_fp32(rollout):
    cfg, params, pad, forward, ro = rollout
    budget = ro.patch_budget(MICRO)
    ro.old_logp = _log_probs(cfg, params, pad, forward, ro, np.arange(ro.num_rows), budget)
    mask = ro.response_mask()
    assert mask.sum() > ro.num_rows  # responses of several tokens
    np.testing.assert_allclose(ro.old_logp[mask], ro.behaviour_logp[:, : ro.resp_len][mask], atol=1e-5)
    assert ro.logprob_gap() < 1e-5


def test_first_minibatch_ratio_is_one_and_kl_is_zero_when_reference_is_policy(rollout):
    cfg, params, pad, forward, ro = rollout
    budget = ro.patch_budget(MICRO)
    in_order = _log_probs(cfg, params, pad, forward, ro, np.arange(ro.num_rows), budget)
    shuffled = np.random.default_rng(0).permutation(ro.num_rows)  # other rows share each micro-batch
    logp = _log_probs(cfg, params, pad, forward, ro, shuffled, budget)
    mask = ro.response_mask()
    np.testing.assert_array_equal(np.exp(logp - in_order)[mask], 1.0)  # the ratio, exactly
    adv = np.linspace(-1, 1, ro.num_rows).astype(np.float32)
    loss, m = grpo_loss(logp, in_order, in_order, adv, mask, kl_coef=1e-3)
    assert float(m["ratio_mean"]) == 1.0 and float(m["kl"]) == 0.0 and float(m["clip_fraction"]) == 0.0
    no_kl, _ = grpo_loss(logp, in_order, in_order, adv, mask, kl_coef=0.0)
    assert float(loss) == float(no_kl)  # the KL term adds exactly 0


def test_splash_on_a_mesh_samples_and_scores_what_xla_does_with_each_devices_images_in_its_chunk(rollout):
    """attention_impl="splash" over fsdp=2: generation and the training forward lay the vision stream out
    one chunk per device (rows 0-1's images in chunk 0, rows 2-3's in chunk 1); the sampled tokens and the
    log-probs equal the single-device xla rollout's (1e-5)."""
    cfg, params, pad, _, ro = rollout
    splash = dataclasses.replace(cfg, attention_impl="splash")
    mesh = sharding.make_mesh({"fsdp": 2}, jax.devices()[:2])
    rules = sharding.DEFAULT_RULES
    stops = tuple(cfg.eos_token_ids) + tuple(range(300, 300 + cfg.text.vocab_size // 6))
    prompts = [ro.encoded[0], ro.encoded[3]]  # 2 + 3 images: each chunk holds a group of rows
    tokens, lengths, behaviour = sample_responses(
        splash, params, prompts, 2, NEW_TOKENS, SamplingConfig(temperature=0.9), jax.random.key(1), stops,
        pad, mesh=mesh, rules=rules, behaviour_logp=True,
    )  # fmt: skip
    want, want_lengths, want_logp = sample_responses(
        cfg, params, prompts, 2, NEW_TOKENS, SamplingConfig(temperature=0.9), jax.random.key(1), stops,
        pad, behaviour_logp=True,
    )  # fmt: skip
    np.testing.assert_array_equal(tokens, want)
    np.testing.assert_array_equal(lengths, want_lengths)
    sampled = Rollout([ro.prompts[0], ro.prompts[3]], prompts, 2, tokens, lengths, 16, 4, 32, NEW_TOKENS)
    mask = sampled.response_mask()
    np.testing.assert_allclose(
        behaviour[:, : sampled.resp_len][mask], want_logp[:, : sampled.resp_len][mask], atol=1e-5
    )
    budget = sampled.patch_budget(4, vision_chunks=2)
    batch = sampled.model_batch(splash, np.arange(4), pad, budget, vision_chunks=2)
    units = budget // 2 // cfg.vision.merge_unit
    index = batch["vision_token_index"]
    assert (index[:2][index[:2] >= 0] < units).all() and (index[2:][index[2:] >= 0] >= units).all()
    forward = jax.jit(functools.partial(response_log_probs, Qwen25VL(splash), 0.9))
    with sharding.mesh_context(mesh, rules):
        logp = sharding.host_rows(forward(params, sharding.global_batch(batch, mesh, rules)))
    np.testing.assert_allclose(
        logp[:, : sampled.resp_len][mask], want_logp[:, : sampled.resp_len][mask], atol=1e-5
    )
