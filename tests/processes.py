"""Worker processes for the multi-process tests: `python -m <module> args...` from the repository root (its
own jax, no forced host device count), and its last stdout line read back as JSON."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def spawn(module: str, args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": ROOT}
    env.pop("XLA_FLAGS", None)  # each worker sets its own device count
    return subprocess.Popen(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def result(proc: subprocess.Popen, timeout: int = 300) -> dict:
    """The worker's last stdout line as JSON; fails with the end of its stderr when it exited non-zero."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-4000:]
    return json.loads(out.strip().splitlines()[-1])
