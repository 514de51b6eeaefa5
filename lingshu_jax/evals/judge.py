"""Optional LLM judge for open-ended answers, over any OpenAI-compatible chat endpoint (stdlib only).

The prompt is MedEvalKit's `get_compare_messages`, word for word: the judge answers
``<judge>0</judge>`` for a correct answer and ``<judge>1</judge>`` for a wrong one (MedEvalKit reads the
text inside <judge>, or the whole reply when the tag is missing, and counts only "0" as correct).
Decoding: temperature 0, as MedEvalKit. A reply that cannot be read, or a request that still fails after
the retries, counts as wrong and is reported in `failures`.

Nothing here runs unless the caller builds an `LLMJudge` with a base URL, a model name and (for hosted
APIs) the name of the environment variable holding the key.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

from lingshu_jax.evals.scoring import tag_content

JUDGE_TEMPLATE = """
Your task is to determine whether the user's answer is correct based on the provided questions and standard answers (for example, if the user expresses a similar meaning to the standard answer, or another interpretation of the standard answer, it is considered correct.)

The question is: {question}

The standard answer: {answer}

The user's answer: {response}

Please strictly follow the following format for output(0 represents correct, 1 represents incorrect):
<think>{{your concise think step}}</think>
<judge>{{0/1}}</judge>

for example:
<think>The standard answer is right, and the user's answer is right frontal lobe, they express the same meaning, so it is correct.</think>
<judge>0</judge>
    """

_RETRY_STATUS = (408, 409, 429, 500, 502, 503, 504)


def judge_messages(question: str, answer: str, response: str) -> list[dict]:
    """The chat messages MedEvalKit sends to the judge."""
    return [
        {
            "role": "user",
            "content": JUDGE_TEMPLATE.format(question=question, answer=answer, response=response),
        }
    ]


def parse_verdict(reply: str | None) -> bool | None:
    """True for "0" (correct), False for "1", None when the reply says neither (counted wrong, as in
    MedEvalKit, VQA_RAD.py:130-131: `extract(result, "judge") == "0"`)."""
    if reply is None:
        return None
    text = tag_content(reply, "judge")
    if text == "0":
        return True
    if text == "1":
        return False
    return None


class LLMJudge:
    """Judges (question, reference, answer) triples through `{base_url}/chat/completions`.

    Args:
      base_url: e.g. "https://api.openai.com/v1" or "http://127.0.0.1:8000/v1".
      model: the judge model name (the paper used "gpt-4.1-2025-04-14").
      api_key_env: environment variable that holds the API key; None sends no Authorization header.
      timeout: seconds per HTTP request.
      max_retries: further tries after a failed request (network errors, 408/409/429/5xx).
      retry_wait: seconds before the first retry, doubled each time.
      max_workers: concurrent requests.
      cache_path: optional JSONL file of verdicts, reused across runs so nothing is judged twice.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout: float = 60.0,
        max_retries: int = 3,
        retry_wait: float = 2.0,
        max_workers: int = 8,
        max_tokens: int = 1024,
        cache_path: str | None = None,
    ):
        if not base_url or not model:
            raise ValueError("LLMJudge needs both base_url and model")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self._key = None
        if api_key_env:
            self._key = os.environ.get(api_key_env)
            if not self._key:
                raise ValueError(f"LLMJudge: environment variable {api_key_env} (the API key) is not set")
        self.timeout, self.max_retries, self.retry_wait = timeout, max_retries, retry_wait
        self.max_workers, self.max_tokens = max_workers, max_tokens
        self.cache_path = cache_path
        self._lock = threading.Lock()
        self._cache = self._load_cache(cache_path)

    @staticmethod
    def _load_cache(path: str | None) -> dict[str, bool | None]:
        cache: dict[str, bool | None] = {}
        if path and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                for line_no, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            row = json.loads(line)
                            cache[row["key"]] = row["verdict"]
                        except (json.JSONDecodeError, KeyError) as exc:
                            raise ValueError(f"{path}:{line_no}: bad judge cache record ({exc})") from exc
        return cache

    def _key_of(self, question: str, answer: str, response: str) -> str:
        blob = json.dumps([self.model, question, answer, response], ensure_ascii=False)
        return hashlib.sha1(blob.encode("utf-8")).hexdigest()

    def chat(self, messages: list[dict]) -> str:
        """One chat completion (temperature 0); retries transient failures; raises the last error."""
        body = json.dumps(
            {"model": self.model, "messages": messages, "temperature": 0, "max_tokens": self.max_tokens}
        ).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        for attempt in range(self.max_retries + 1):
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                    payload = json.loads(reply.read().decode("utf-8"))
                return payload["choices"][0]["message"]["content"]
            except urllib.error.HTTPError as exc:
                if exc.code not in _RETRY_STATUS or attempt == self.max_retries:
                    raise
            except (urllib.error.URLError, TimeoutError, ConnectionError):
                if attempt == self.max_retries:
                    raise
            time.sleep(self.retry_wait * (2**attempt))
        raise AssertionError("unreachable")

    def judge(self, question: str, answer: str, response: str) -> bool | None:
        """Verdict for one answer: True correct, False wrong, None when the judge failed."""
        key = self._key_of(question, answer, response)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        try:
            verdict = parse_verdict(self.chat(judge_messages(question, answer, response)))
        except (urllib.error.URLError, TimeoutError, ConnectionError, ValueError, KeyError, IndexError):
            return None  # not cached: a later run tries again
        with self._lock:
            self._cache[key] = verdict
            if self.cache_path:
                with open(self.cache_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"key": key, "verdict": verdict}) + "\n")
        return verdict

    def judge_many(self, triples: Sequence[tuple[str, str, str]]) -> list[bool | None]:
        """Verdicts for (question, answer, response) triples, in order, `max_workers` at a time."""
        if not triples:
            return []
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            return list(pool.map(lambda t: self.judge(*t), triples))
