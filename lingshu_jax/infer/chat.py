"""Multi-turn chat: a conversation that grows by one user turn and one assistant reply per `ask`.

    session = ChatSession(generator, system="You are a radiologist.")
    session.ask("What modality is this?", images=["cxr.png"])   -> "A chest X-ray."
    session.ask("Any pneumothorax?")                            -> "..."   (the image stays in context)

Each turn re-encodes the whole conversation (earlier images included) and generates the reply.
`run_repl` drives a session from text lines: `:image PATH` attaches an image to the next turn; an empty
line or end of input ends the chat.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Sequence

from lingshu_jax.infer.generator import Generator, user_turn
from lingshu_jax.infer.sampling import SamplingConfig

IMAGE_COMMAND = ":image"


class ChatSession:
    """A conversation with a `Generator`; `messages` holds every turn so far."""

    def __init__(
        self,
        generator: Generator,
        system: str | None = None,
        max_new_tokens: int = 256,
        sampling: SamplingConfig | None = None,
        seed: int = 0,
    ):
        self.generator = generator
        self.max_new_tokens = max_new_tokens
        self.sampling = sampling
        self.seed = seed
        self.messages: list[dict] = [{"role": "system", "content": system}] if system else []

    def ask(self, text: str, images: Sequence = ()) -> str:
        """Adds a user turn (images first, then text), generates and records the reply; returns it."""
        turn = len([m for m in self.messages if m["role"] == "user"])
        reply, self.messages = self.generator.chat(
            [*self.messages, user_turn(text, images)], self.max_new_tokens, self.sampling, self.seed + turn
        )
        return reply


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


def run_repl(
    session: ChatSession,
    lines: Iterable[str],
    emit: Callable[[str], None] = print,
    warn: Callable[[str], None] = _warn,
) -> int:
    """Chats over `lines` (e.g. sys.stdin); emits each reply. Returns the number of turns answered.

    A `:image` line whose file does not exist is reported through `warn` and skipped.
    """
    pending: list[str] = []
    turns = 0
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            break
        if line.startswith(IMAGE_COMMAND + " ") or line == IMAGE_COMMAND:
            path = line[len(IMAGE_COMMAND) :].strip()
            if not os.path.isfile(path):
                warn(f"{IMAGE_COMMAND}: no such file {path!r}; usage: '{IMAGE_COMMAND} scan.png'")
                continue
            pending.append(path)
            continue
        emit(session.ask(line, pending))
        pending = []
        turns += 1
    return turns
