"""Shared fixtures of the eval tests: the fixture folder, load options writing into tmp_path, and a fake
OpenAI-compatible judge server bound to 127.0.0.1 (a bounded `http.server` thread, shut down after each test)."""

import http.server
import json
import os
import re
import threading

import pytest

from lingshu_jax.evals.types import LoadOptions

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


@pytest.fixture
def fixtures_dir() -> str:
    return FIXTURES


@pytest.fixture
def load_opts(tmp_path) -> LoadOptions:
    return LoadOptions(cache_dir=str(tmp_path / "images"), need_images=True)


class _FakeChat(http.server.BaseHTTPRequestHandler):
    """Says correct ("0") iff the user's answer equals the standard answer; can fail the first N calls."""

    def do_POST(self):
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with server.lock:
            server.requests.append(
                {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
            )
            fail = server.fail_first > 0
            server.fail_first -= int(fail)
        if fail:
            self.send_response(503)
            self.end_headers()
            return
        prompt = body["messages"][0]["content"]
        std = re.search(r"The standard answer: (.*)\n", prompt).group(1)
        user = re.search(r"The user's answer: (.*)\n", prompt).group(1)
        verdict = "0" if std.strip().lower() == user.strip().lower() else "1"
        reply = {
            "choices": [
                {"message": {"role": "assistant", "content": f"<think>ok</think>\n<judge>{verdict}</judge>"}}
            ]
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def fake_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeChat)
    server.lock, server.requests, server.fail_first = threading.Lock(), [], 0
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
