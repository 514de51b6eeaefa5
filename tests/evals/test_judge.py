"""The LLM judge against a local fake OpenAI-compatible server on 127.0.0.1 (no real network)."""

import pytest

from lingshu_jax.evals.judge import JUDGE_TEMPLATE, LLMJudge, judge_messages, parse_verdict


def _judge(server, **kw):
    return LLMJudge(
        f"http://127.0.0.1:{server.server_address[1]}/v1",
        "fake-judge",
        api_key_env=None,
        timeout=5,
        retry_wait=0.01,
        **kw,
    )


def test_prompt_is_medevalkits_compare_prompt():
    msg = judge_messages("Where?", "left lung", "left lung")[0]
    assert msg["role"] == "user"
    assert "The standard answer: left lung\n" in msg["content"]
    assert "(0 represents correct, 1 represents incorrect)" in msg["content"]
    assert "<think>{your concise think step}</think>\n<judge>{0/1}</judge>" in msg["content"]
    assert JUDGE_TEMPLATE.startswith("\nYour task is to determine whether the user's answer is correct")


@pytest.mark.parametrize(
    "reply,verdict",
    [
        ("<judge>0</judge>", True),
        ("<think>x</think><judge> 1 </judge>", False),
        ("0", True),
        ("I think it is right", None),
        (None, None),
    ],
)
def test_parse_verdict(reply, verdict):
    assert parse_verdict(reply) is verdict


def test_judge_many_against_local_fake_server(fake_server):
    judge = _judge(fake_server)
    got = judge.judge_many([("Q1", "brain", "Brain"), ("Q2", "liver", "spleen"), ("Q3", "left", "left")])
    assert got == [True, False, True]
    sent = fake_server.requests[0]
    assert sent["path"] == "/v1/chat/completions" and sent["auth"] is None
    assert sent["body"]["model"] == "fake-judge" and sent["body"]["temperature"] == 0


def test_judge_retries_transient_errors_and_sends_the_api_key(fake_server, monkeypatch):
    monkeypatch.setenv("FAKE_JUDGE_KEY", "sk-test")
    fake_server.fail_first = 2
    judge = LLMJudge(
        f"http://127.0.0.1:{fake_server.server_address[1]}/v1",
        "fake-judge",
        api_key_env="FAKE_JUDGE_KEY",
        timeout=5,
        retry_wait=0.01,
        max_retries=3,
    )
    assert judge.judge("Q", "a", "a") is True
    assert len(fake_server.requests) == 3 and fake_server.requests[-1]["auth"] == "Bearer sk-test"


def test_judge_failure_is_none_after_retries(fake_server):
    fake_server.fail_first = 10
    assert _judge(fake_server, max_retries=1).judge("Q", "a", "a") is None
    assert len(fake_server.requests) == 2


def test_cache_avoids_asking_twice(fake_server, tmp_path):
    cache = str(tmp_path / "cache.jsonl")
    assert _judge(fake_server, cache_path=cache).judge("Q", "a", "a") is True
    assert _judge(fake_server, cache_path=cache).judge("Q", "a", "a") is True
    assert len(fake_server.requests) == 1


def test_missing_api_key_env_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(ValueError, match="NO_SUCH_KEY_VAR"):
        LLMJudge("http://127.0.0.1:9/v1", "m", api_key_env="NO_SUCH_KEY_VAR")
