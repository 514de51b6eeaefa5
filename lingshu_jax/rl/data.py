"""RL prompt data: JSONL records with closed answers -> prompts in the reasoning format, and their order.

One record per line (images relative to `root`)::

    {"question": "Is there a fracture?", "images": ["xr/1.png"], "answer": "yes", "question_type": "yes_no"}
    {"question": "Which organ?", "images": ["ct/2.png"], "answer": "B", "question_type": "multiple_choice",
     "options": ["liver", "spleen", "kidney"]}
    {"messages": [{"role": "user", "content": "<image>Which organ?"}], "images": ["ct/2.png"],
     "answer": "liver"}

`question_type` is one of closed | open | yes_no | multiple_choice (or the evaluation suite's names
closed | open | yesno | mc); without it, options make a record multiple choice, else it is closed. A
multiple-choice answer is the option's letter (or the option's text, turned into its letter).

Prompt text: a "question" record gets the evaluation suite's reasoning prompt (`evals.prompts`, MedEvalKit
wording, which asks for the answer in ``\\boxed{}``); a "messages" record keeps its own user turn(s) (any
layout `data.formats.to_messages` reads). Both then get `format_prompt` appended to the last user text,
which asks for ``<think>...</think>`` before the answer, the strict format the `format` reward checks.

Order: `PromptSchedule` draws the prompts of rollout step s from a seeded permutation per epoch, as a pure
function of s, so a resumed run continues at exactly the right place without saving iterator state.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Sequence

import numpy as np

from lingshu_jax.data.errors import DataError, resolve_under_root
from lingshu_jax.data.formats import to_messages
from lingshu_jax.evals import prompts as eval_prompts

log = logging.getLogger(__name__)

# record question_type -> the reward / scorer's name (`rl.rewards._reference_fields`)
QUESTION_TYPES = {
    "closed": "closed",
    "open": "open",
    "yes_no": "yesno",
    "yesno": "yesno",
    "multiple_choice": "mc",
    "mc": "mc",
}
# EasyR1's reasoning instruction (its r1v / math format prompt), with the answer form the evaluation uses.
DEFAULT_FORMAT_PROMPT = (
    "You FIRST think about the reasoning process as an internal monologue and then provide the final answer. "
    "The reasoning process MUST BE enclosed within <think> </think> tags. The final answer MUST BE put in "
    "\\boxed{}."
)


@dataclasses.dataclass(frozen=True)
class Prompt:
    """One RL prompt.

    messages: the conversation up to the last user turn (Qwen content parts; image parts hold absolute paths).
    reference: {"answer", "question_type" (closed|open|yesno|mc), "options"} for the rewards.
    where: "file:line" of the record (for error messages).
    """

    messages: tuple
    reference: dict
    where: str

    @property
    def question_type(self) -> str:
        return self.reference["question_type"]

    @property
    def num_images(self) -> int:
        return sum(1 for m in self.messages for p in m["content"] if p["type"] == "image")


# ------------------------------------------------------------------------------------------- records
def _question_type(record: dict, where: str) -> str:
    raw = record.get("question_type") or ("multiple_choice" if record.get("options") else "closed")
    if raw not in QUESTION_TYPES:
        raise ValueError(f"{where}: question_type {raw!r}; expected one of {sorted(QUESTION_TYPES)}")
    return QUESTION_TYPES[raw]


def _mc_answer(answer: str, options: Sequence[str], where: str) -> str:
    """A multiple-choice answer as its letter (accepts the letter or the option's exact text)."""
    letters = eval_prompts.LETTERS[: len(options)]
    if answer.strip().upper() in letters and len(answer.strip()) == 1:
        return answer.strip().upper()
    matches = [i for i, o in enumerate(options) if o.strip().lower() == answer.strip().lower()]
    if not matches:
        raise ValueError(
            f"{where}: multiple-choice answer {answer!r} is neither a letter in {letters} nor an "
            "option's text"
        )
    return letters[matches[0]]


def _reference(record: dict, where: str) -> dict:
    if record.get("answer") in (None, ""):
        raise ValueError(f"{where}: record has no 'answer' (RL needs a verifiable closed answer)")
    qtype = _question_type(record, where)
    options = tuple(str(o) for o in record.get("options") or ())
    if qtype == "mc" and not options:
        raise ValueError(f"{where}: a multiple_choice record needs 'options'")
    answer = str(record["answer"])
    if qtype == "mc":
        answer = _mc_answer(answer, options, where)
    if qtype == "yesno" and answer.strip().lower() not in ("yes", "no"):
        raise ValueError(f"{where}: yes_no answer {answer!r} is not 'yes' or 'no'")
    return {"answer": answer, "question_type": qtype, "options": options}


def _question_text(record: dict, qtype: str) -> str:
    """The evaluation suite's reasoning prompt for a bare question."""
    q = str(record["question"])
    if qtype == "mc":
        return eval_prompts.multiple_choice_prompt(
            q, eval_prompts.format_choices(record["options"]), reasoning=True
        )
    builder = {
        "yesno": eval_prompts.judgement_prompt,
        "closed": eval_prompts.closed_prompt,
        "open": eval_prompts.open_prompt,
    }[qtype]
    return builder(q, reasoning=True)


def _conversation(record: dict, qtype: str, where: str) -> list[dict]:
    """User-side messages (system / user turns; a trailing assistant turn is dropped)."""
    if "messages" in record or "conversations" in record:
        try:
            messages, _ = to_messages(record, where)
        except DataError as e:
            raise ValueError(f"{where}: {e}") from None
        while messages and messages[-1]["role"] == "assistant":
            messages.pop()
        if not messages or messages[-1]["role"] != "user":
            raise ValueError(f"{where}: the conversation must end with a user turn (after dropping answers)")
        return messages
    if "question" not in record:
        raise ValueError(f"{where}: a record needs 'question' or 'messages' (keys: {sorted(record)[:8]})")
    images = record.get("images") or ([record["image"]] if record.get("image") else [])
    return list(eval_prompts.build_messages(_question_text(record, qtype), list(images)))


def _finish_messages(messages: list[dict], root: str, format_prompt: str, where: str) -> tuple:
    """Image refs resolved under `root`; `format_prompt` appended to the last user turn's text."""
    out = []
    for message in messages:
        parts = []
        for part in message["content"]:
            part = dict(part)
            if part["type"] == "image":
                if not isinstance(part["image"], str):
                    raise ValueError(
                        f"{where}: image references must be paths, got {type(part['image']).__name__}"
                    )
                try:
                    part["image"] = resolve_under_root(part["image"], root, where)
                except DataError as e:
                    raise ValueError(f"{where}: {e}") from None
            parts.append(part)
        out.append({"role": message["role"], "content": parts})
    if format_prompt:
        last = out[-1]["content"]
        texts = [i for i, p in enumerate(last) if p["type"] == "text"]
        if texts:
            i = texts[-1]
            last[i] = {"type": "text", "text": last[i]["text"].rstrip() + " " + format_prompt}
        else:
            last.append({"type": "text", "text": format_prompt})
    return tuple(out)


def parse_record(record: dict, where: str, root: str, format_prompt: str = DEFAULT_FORMAT_PROMPT) -> Prompt:
    """One decoded JSONL record -> Prompt; ValueError naming `where` (file:line) on any defect."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: a record must be a JSON object, got {type(record).__name__}")
    reference = _reference(record, where)
    messages = _conversation(record, reference["question_type"], where)
    return Prompt(_finish_messages(messages, root, format_prompt, where), reference, where)


# ------------------------------------------------------------------------------------------- loading
def read_prompts(paths: Sequence[str], root: str, format_prompt: str = DEFAULT_FORMAT_PROMPT) -> list[Prompt]:
    """Every record of the JSONL files, in file order."""
    if isinstance(paths, str):
        paths = [paths]
    if not paths:
        raise ValueError("config.data.paths: no prompt files given")
    out = []
    for path in paths:
        if not os.path.isfile(path):
            raise ValueError(f"config.data.paths: {path}: no such file")
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{where}: invalid JSON ({e})") from None
                out.append(parse_record(record, where, root, format_prompt))
    return out


def downsample_yes_no(prompts: Sequence[Prompt], keep: float, seed: int = 0) -> list[Prompt]:
    """Keeps each yes/no prompt with probability `keep` (Lingshu-RL keeps ~5%); other types all stay.

    Deterministic in (seed, record order): the same files and seed always keep the same records.
    """
    if not 0.0 <= keep <= 1.0:
        raise ValueError(f"config.data.yes_no_keep={keep}: must be in [0, 1]")
    draws = np.random.default_rng([seed, 0x5E5]).random(len(prompts))
    return [p for p, u in zip(prompts, draws) if p.question_type != "yesno" or u < keep]


def load_prompts(data_cfg: Any, seed: int = 0) -> list[Prompt]:
    """`config.data` -> the training prompts (yes/no downsampled). Keys: paths, root, yes_no_keep,
    format_prompt (read here); shuffle, filter_overlong (read by the trainer)."""
    cfg = dict(data_cfg)
    unknown = sorted(
        set(cfg) - {"paths", "root", "yes_no_keep", "format_prompt", "shuffle", "filter_overlong"}
    )
    if unknown:
        raise ValueError(f"config.data: unknown keys {unknown}")
    prompts = read_prompts(
        list(cfg["paths"]), cfg.get("root") or "", cfg.get("format_prompt", DEFAULT_FORMAT_PROMPT)
    )
    kept = downsample_yes_no(prompts, float(cfg.get("yes_no_keep", 1.0)), seed)
    counts = {t: sum(p.question_type == t for p in kept) for t in ("closed", "open", "yesno", "mc")}
    log.info(
        "RL prompts: %d of %d kept after yes/no downsampling; by type %s", len(kept), len(prompts), counts
    )
    if not kept:
        raise ValueError(f"config.data.paths {list(cfg['paths'])}: no prompts left")
    return kept


# ------------------------------------------------------------------------------------------- order
@dataclasses.dataclass(frozen=True)
class PromptSchedule:
    """Which prompts rollout step `step` (1-based) uses: positions [(step-1)*batch, step*batch) of an endless
    stream of epochs, each epoch a permutation seeded by (seed, epoch) (or file order without shuffle)."""

    num_prompts: int
    batch: int
    seed: int = 0
    shuffle: bool = True

    def _epoch(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.num_prompts)
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_prompts)

    def position(self, step: int) -> int:
        """Prompts consumed before step `step`."""
        return (step - 1) * self.batch

    def indices(self, step: int) -> np.ndarray:
        """[batch] prompt indices of step `step` (an epoch boundary may fall inside a batch)."""
        if step < 1:
            raise ValueError(f"PromptSchedule: steps count from 1, got {step}")
        start = self.position(step)
        out, pos = [], start
        while pos < start + self.batch:
            epoch, offset = divmod(pos, self.num_prompts)
            take = min(self.num_prompts - offset, start + self.batch - pos)
            out.append(self._epoch(epoch)[offset : offset + take])
            pos += take
        return np.concatenate(out)


# ------------------------------------------------------------------------------------------- demo data
def prepare_easy_vqa_prompts(out_dir: str, split: str = "train") -> str:
    """The RL demo's prompts: easy-VQA's training questions (PyPI `easy-vqa`, offline) as JSONL records,
    in the SFT demo's conversation form (system prompt, image, question), images relative to the easy-VQA
    data root. 28K of the 38.6K questions are yes/no, as in medical VQA, so `yes_no_keep` matters.
    split "test": the held-out questions (easy_vqa_rl_test.jsonl, images never trained on).
    Idempotent; returns the JSONL path."""
    from easy_vqa import get_test_questions, get_train_questions

    from lingshu_jax.demo import SYSTEM

    if split not in ("train", "test"):
        raise ValueError(f"prepare_easy_vqa_prompts: split {split!r}; expected 'train' or 'test'")
    path = os.path.join(out_dir, "easy_vqa_rl.jsonl" if split == "train" else "easy_vqa_rl_test.jsonl")
    if os.path.exists(path):
        return path
    os.makedirs(out_dir, exist_ok=True)
    rows = []
    questions = get_train_questions() if split == "train" else get_test_questions()
    for q, a, i in zip(*questions):
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"<image>{q}"},
                ],
                "images": [f"{split}/images/{i}.png"],
                "answer": a,
                "question_type": "yes_no" if a in ("yes", "no") else "closed",
            }
        )
    tmp = f"{path}.{os.getpid()}.tmp"  # concurrent runs preparing the same directory
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    os.replace(tmp, path)
    return path
