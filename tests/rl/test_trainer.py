"""The GRPO trainer end to end on a toy task a tiny model can learn on a CPU (tests/rl/toy.py).

One module fixture pays for the SFT warm start; the GRPO run that must learn is also the run that is
preempted (SIGTERM from a reward plugin in the middle of a step) and resumed, and a short uninterrupted
run checks that the resumed steps are exactly the steps it would have made. The run logs `logprob_gap`
(config.rl.check_logprobs): the update's log-prob forward against the logits the decode loop sampled from.
"""

import json
import os

import numpy as np
import pytest

from lingshu_jax.model.config import preset
from lingshu_jax.processing import Processor
from lingshu_jax.rl.data import read_prompts
from lingshu_jax.rl.heldout import greedy_scores
from lingshu_jax.rl.rollout import Rollout, encode_prompt
from lingshu_jax.rl.trainer import GRPOSettings, make_reward_fn, train
from lingshu_jax.train.checkpoint import Checkpointer
from lingshu_jax.train.metrics import read_metrics
from lingshu_jax.train.trainer import train as sft_train
from tests.rl import toy
from tests.rl.plugins import SIGTERM_AT_CALL

SFT_STEPS, RL_STEPS, STOP_AT = 80, 15, 3
REWARDS = (("format", 0.5), ("accuracy", 1.0), ("test_sigterm", 0.0))


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    """The toy task's files (prompts, SFT conversations, images, tokenizer / processor assets)."""
    return toy.write_toy(str(tmp_path_factory.mktemp("rl_toy")))


@pytest.fixture(scope="module")
def toy_task(toy_data):
    """(toy paths, the SFT warm-start workdir)."""
    sft = os.path.join(toy_data["root"], "sft")
    sft_train(toy.sft_config(toy_data, SFT_STEPS), sft)
    return toy_data, sft


def _rl_config(toy_task, steps):
    paths, sft = toy_task
    c = toy.rl_config(paths, sft, steps)
    c.rewards = REWARDS
    c.reward_modules = ("tests.rl.plugins",)
    return c


def _rows(workdir):
    return read_metrics(os.path.join(workdir, "metrics.jsonl"))


# ------------------------------------------------------------------------------------------- learning
def test_grpo_learns_the_toy_task_through_a_sigterm_and_resume(toy_task, tmp_path, monkeypatch):
    work = str(tmp_path / "rl")
    monkeypatch.setenv(SIGTERM_AT_CALL, str(STOP_AT))  # the plugin is called once per step
    train(_rl_config(toy_task, RL_STEPS), work)
    assert [r["step"] for r in _rows(work)] == list(range(1, STOP_AT + 1))
    ck = Checkpointer(os.path.join(work, "checkpoints"))
    assert ck.latest_step() == STOP_AT
    saved = ck.restore(STOP_AT, None)
    ck.close()
    assert int(saved["step"]) == STOP_AT and int(saved["data_position"]) == STOP_AT * 8
    assert not os.path.exists(os.path.join(work, "final"))

    monkeypatch.delenv(SIGTERM_AT_CALL)
    train(_rl_config(toy_task, RL_STEPS), work)  # the same command again: resumes
    rows = _rows(work)
    assert [r["step"] for r in rows] == list(range(1, RL_STEPS + 1))
    accuracy = [r["reward/accuracy"] for r in rows]
    fifth = RL_STEPS // 5
    first, last = np.mean(accuracy[:fifth]), np.mean(accuracy[-fifth:])
    print("accuracy per step:", [round(a, 3) for a in accuracy], "first/last fifth:", first, last)
    assert last > first + 0.15, accuracy
    format_ = [r["reward/format"] for r in rows]
    assert np.mean(format_[-fifth:]) >= np.mean(format_[:fifth]) - 0.05, format_  # not traded for accuracy
    # the update's forward (whole rows, images included) reproduces the decode loop's log-probs
    assert max(r["logprob_gap"] for r in rows) < 1e-4
    for key in (
        "reward",
        "reward/format",
        "reward/test_sigterm",
        "kl",
        "clip_fraction",
        "entropy",
        "response_length",
        "time/rollout",
        "time/update",
        "rollout_tokens_per_s",
        "time/update_per_minibatch",
        "time/compile/rollout",
        "time/compile/update",
    ):
        assert all(np.isfinite(r[key]) for r in rows), key
    assert os.path.exists(os.path.join(work, "final")) and os.path.exists(os.path.join(work, "curves.png"))
    assert os.listdir(os.path.join(work, "tensorboard"))
    assert {r["step"] for r in read_metrics(os.path.join(work, "samples.jsonl"))} == set(
        range(1, RL_STEPS + 1)
    )

    ref = str(tmp_path / "uninterrupted")  # what the first STOP_AT + 1 steps are without the stop
    train(_rl_config(toy_task, STOP_AT + 1), ref)
    assert len(_rows(ref)) == STOP_AT + 1
    for a, b in zip(_rows(ref), rows):
        assert {k: a[k] for k in ("reward", "loss", "kl", "grad_norm")} == {
            k: b[k] for k in ("reward", "loss", "kl", "grad_norm")
        }, a["step"]


# ------------------------------------------------------------------------------------------- pieces
def test_heldout_greedy_scores_of_the_sft_policy_are_its_rewards_on_its_greedy_answers(toy_task):
    paths, sft = toy_task
    prompts = read_prompts([paths["rl"]], paths["root"], toy.FORMAT_PROMPT)[::4]
    reward_fn, _ = make_reward_fn(_rl_config(toy_task, 1))
    scores = greedy_scores(sft, prompts, reward_fn, 24)
    assert scores["n"] == len(prompts) == 8 and 0.0 <= scores["accuracy"] <= 1.0
    assert scores["format"] > 0.5  # the warm start writes the reasoning format
    assert scores["reward"] == pytest.approx(0.5 * scores["format"] + scores["accuracy"])


def test_a_sampled_image_pad_token_is_text_to_the_forward(toy_data):
    cfg = preset("tiny")
    proc = Processor.from_pretrained(toy_data["assets"])
    prompt = read_prompts([toy_data["rl"]], toy_data["root"], toy.FORMAT_PROMPT)[0]
    enc = encode_prompt(proc, prompt)
    tokens = np.array([[100, cfg.image_token_id, 101, cfg.eos_token_ids[0]]], np.int32)
    ro = Rollout([prompt], [enc], 1, tokens, np.array([4], np.int32), prompt_bucket=32, response_bucket=8)
    batch = ro.model_batch(cfg, [0], proc.tokenizer.pad_token_id, ro.patch_budget(1))
    pos = batch["position_ids"][:, 0]
    p = ro.prompt_len
    assert batch["input_ids"][0, p + 1] == cfg.image_token_id and batch["vision_token_index"][0, p + 1] == -1
    np.testing.assert_array_equal(pos[:, p : p + 4], pos[:, p - 1 : p] + np.arange(1, 5))


def test_a_plugin_reward_is_imported_and_weighted_by_name_from_the_config(toy_data):
    c = _rl_config((toy_data, ""), 1)
    c.rewards = (("accuracy", 1.0), ("test_mentions_colour", 0.25))
    fn, names = make_reward_fn(c)
    ref = {"answer": "B", "question_type": "closed"}
    total, per = fn(["<think>green</think>\\boxed{B}", "<think>?</think>\\boxed{A}"], [ref, ref])
    assert names == ["accuracy", "test_mentions_colour"]
    np.testing.assert_allclose(total, [1.25, 0.0])
    np.testing.assert_allclose(per["test_mentions_colour"], [1.0, 0.0])


def test_config_errors_name_the_key_before_anything_compiles(toy_data, tmp_path):
    toy_task = (toy_data, "")
    c = _rl_config(toy_task, 1)
    c.rewards = (("accuracy", 1.0), ("no_such_verifier", 1.0))
    with pytest.raises(ValueError, match="config.rewards: unknown reward 'no_such_verifier'"):
        train(c, str(tmp_path / "a"))
    with pytest.raises(ValueError, match="rollout_prompts=6 must be a multiple of .*mini_batch_prompts=4"):
        GRPOSettings.from_config({**_rl_config(toy_task, 1).rl.to_dict(), "rollout_prompts": 6})
    with pytest.raises(ValueError, match=r"config.rl: unknown keys \['kl'\]"):
        GRPOSettings.from_config({"kl": 0.1})
    c = _rl_config(toy_task, 1)
    c.rl.micro_batch_rows = 4  # the default mesh has 8 batch shards (8 simulated devices)
    c.rl.mini_batch_prompts = 2
    with pytest.raises(ValueError, match="micro_batch_rows=4 must be a multiple of the mesh's batch shards"):
        train(c, str(tmp_path / "b"))


def test_lingshu_rl_config_is_the_paper_recipe():
    from configs.lingshu import rl

    c = rl.get_config("size=7b,steps=5")
    s = GRPOSettings.from_config(c.rl)
    assert (s.rollout_prompts, s.mini_batch_prompts, s.group_size, s.temperature, s.kl_coef) == (
        512,
        128,
        16,
        1.0,
        1e-3,
    )
    assert s.max_prompt_tokens + s.max_new_tokens == 4096 and s.updates_per_step == 4
    assert list(map(tuple, c.rewards)) == [("format", 0.5), ("accuracy", 1.0)]
    assert c.data.yes_no_keep == 0.05 and c.optim.groups[0][1]["peak"] == 1e-6
    assert json.loads(c.to_json_best_effort())["train"]["total_steps"] == 5
