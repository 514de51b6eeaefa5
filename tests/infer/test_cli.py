"""scripts/generate.py end to end in a subprocess: single answer, stdin chat, errors exit 2."""

import os
import subprocess
import sys

import pytest

from lingshu_jax.infer import ChatSession, Generator
from tests.infer.conftest import image

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "generate.py")
MAX_NEW = "5"


def _run(args, stdin=""):
    return subprocess.run(
        [sys.executable, SCRIPT, *args], check=False, input=stdin, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def png(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("cli") / "scan.png")
    image(84, 56, 7).save(path)
    return path


def test_single_answer_equals_the_library(tiny_hf_dir, ours, png):
    proc = _run(
        ["--model", tiny_hf_dir, "--image", png, "--prompt", "What is shown?", "--max_new_tokens", MAX_NEW]
    )
    assert proc.returncode == 0, proc.stderr
    expected = Generator.from_model(ours).generate_text(
        "What is shown?", images=[png], max_new_tokens=int(MAX_NEW)
    )[0]
    assert proc.stdout == expected + "\n"


def test_chat_reads_turns_from_stdin(tiny_hf_dir, ours, png):
    proc = _run(
        ["--model", tiny_hf_dir, "--chat", "--max_new_tokens", MAX_NEW],
        stdin=f":image {png}\nWhat modality?\nAny fracture?\n\nignored after the empty line\n",
    )
    assert proc.returncode == 0, proc.stderr
    session = ChatSession(Generator.from_model(ours), max_new_tokens=int(MAX_NEW))
    expected = [session.ask("What modality?", [png]), session.ask("Any fracture?")]
    assert proc.stdout == "".join(r + "\n" for r in expected)


def test_errors_exit_2_with_the_message(tmp_path):
    proc = _run(["--model", str(tmp_path / "missing"), "--prompt", "hi"])
    assert proc.returncode == 2 and "error:" in proc.stderr and "missing" in proc.stderr
    proc = _run(["--model", str(tmp_path)])
    assert proc.returncode == 2 and "--prompt is required" in proc.stderr
