"""Tiny worker sessions for the harness tests (imported by spawned worker processes)."""

import os


class Echo:
    def __init__(self, value):
        self.value = value
        self.calls = 0

    def run(self, add=0):
        self.calls += 1
        return {"value": self.value + add, "calls": self.calls, "pid": os.getpid()}

    def env(self, key):
        return os.environ.get(key)

    def start_env(self, key):
        """`key` as the process was exec'd with (what glibc and the dynamic loader read at start)."""
        entries = open("/proc/self/environ", "rb").read().split(b"\0")
        found = [e.split(b"=", 1)[1].decode() for e in entries if e.startswith(key.encode() + b"=")]
        return found[0] if found else None

    def fail(self):
        raise ValueError("boom from the worker")


class BrokenInit:
    def __init__(self):
        raise RuntimeError("cannot build this session")
