"""The embedded demo: real offline data, a tiny Lingshu-shaped model, stages 1 -> 2 -> 3 on a CPU.

Data (nothing downloaded):
- easy-VQA (PyPI `easy-vqa`): 4,000 + 1,000 64x64 PNG images of coloured shapes, 48K questions with 13
  answers. Captions for the alignment stages are derived from each image's own answers ("A teal circle.").
- pydicom's bundled CT and MR test slices (`CT_small.dcm`, `MR_small.dcm`): modality captions/questions,
  read through our DICOM path (rescale, window, to RGB).
- Stage 3 also teaches Lingshu's reasoning format, as Lingshu's SFT does before its RL stage: the same
  questions with `REASONING_PROMPT` appended, answered ``<think>{colour} {shape}</think><answer>{answer}</answer>``
  (the reasoning names what the image shows; `vqa_reasoning.jsonl`). The RL demo's prompts ask for it.
The tokenizer is Qwen's BPE cut to its first 1,000 ranks (from `dashscope`'s qwen.tiktoken).
"""

from __future__ import annotations

import collections
import json
import os
import random
import shutil

SHAPES = ("circle", "rectangle", "triangle")
SYSTEM = "You are a helpful medical assistant."
# easy-VQA's 64x64 images are upscaled to 112x112 (8x8 patches, 16 merged tokens). At the processor's
# default 56x56 (4 merged tokens, each mostly background) the demo model never learned to read the image
# (docs/rl_cpu.md section 6).
DEMO_IMAGE_PIXELS = 112 * 112
REASONING_PROMPT = "Think in <think> </think>, then answer in <answer> </answer>."


def easy_vqa_root() -> str:
    """The directory of the easy-vqa package's images and questions (the demo's offline data root)."""
    import easy_vqa

    return os.path.join(os.path.dirname(easy_vqa.__file__), "data")


def _conv(image: str, question: str, answer: str) -> dict:
    return {
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": SYSTEM}]},
            {
                "role": "user",
                "content": [{"type": "image", "image": image}, {"type": "text", "text": question}],
            },
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ]
    }


def _facts(questions, answers, image_ids) -> dict:
    """image id -> {"color", "shape"} as far as its own questions tell."""
    facts = collections.defaultdict(dict)
    for q, a, i in zip(questions, answers, image_ids):
        if "color" in q:
            facts[i]["color"] = a
        if a in SHAPES:
            facts[i]["shape"] = a
    return facts


def reasoning_conversations(questions, answers, image_ids, split: str) -> list[dict]:
    """Stage 3's reasoning-format conversations: question + REASONING_PROMPT ->
    <think>colour shape</think><answer>answer</answer> (images whose shape is known)."""
    facts = _facts(questions, answers, image_ids)
    out = []
    for q, a, i in zip(questions, answers, image_ids):
        f = facts[i]
        if "shape" in f:
            seen = " ".join(w for w in (f.get("color"), f["shape"]) if w)
            answer = f"<think>{seen}</think><answer>{a}</answer>"
            out.append(_conv(f"{split}/images/{i}.png", f"{q} {REASONING_PROMPT}", answer))
    return out


def _captions(questions, answers, image_ids, split: str) -> list[dict]:
    facts = _facts(questions, answers, image_ids)
    out = []
    for i, f in sorted(facts.items()):
        if "shape" in f:
            words = " ".join(w for w in (f.get("color"), f["shape"]) if w)
            out.append(_conv(f"{split}/images/{i}.png", "Describe the image.", f"A {words}."))
    return out


def _write_jsonl(path: str, rows: list[dict]) -> str:
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return path


def prepare_demo_data(out_dir: str, eval_questions: int = 300, seed: int = 0) -> dict[str, str]:
    """Writes the demo's JSONL files, DICOM copies and tokenizer/processor assets; idempotent."""
    done = os.path.join(out_dir, "READY")
    paths = {
        k: os.path.join(out_dir, f)
        for k, f in (
            ("captions", "captions.jsonl"),
            ("vqa_train", "vqa_train.jsonl"),
            ("vqa_eval", "vqa_eval.jsonl"),
            ("dicom", "dicom.jsonl"),
            ("vqa_reasoning", "vqa_reasoning.jsonl"),
        )
    }
    paths.update(
        assets=os.path.join(out_dir, "assets"),
        easy_vqa_root=easy_vqa_root(),
        dicom_root=os.path.join(out_dir, "dicom"),
    )
    from easy_vqa import get_test_questions, get_train_questions

    if not os.path.exists(paths["vqa_reasoning"]):  # also into a root prepared before the file existed
        os.makedirs(out_dir, exist_ok=True)
        _write_jsonl(paths["vqa_reasoning"], reasoning_conversations(*get_train_questions(), "train"))
    if os.path.exists(done):
        return paths
    from pydicom.data import get_testdata_file

    os.makedirs(paths["dicom_root"], exist_ok=True)
    tq, ta, ti = get_train_questions()
    eq, ea, ei = get_test_questions()
    _write_jsonl(paths["captions"], _captions(tq, ta, ti, "train"))
    _write_jsonl(paths["vqa_train"], [_conv(f"train/images/{i}.png", q, a) for q, a, i in zip(tq, ta, ti)])
    rng = random.Random(seed)
    pick = rng.sample(range(len(eq)), min(eval_questions, len(eq)))
    _write_jsonl(paths["vqa_eval"], [_conv(f"test/images/{ei[k]}.png", eq[k], ea[k]) for k in sorted(pick)])
    dicom_rows = []
    for name, modality in (("CT_small.dcm", "CT"), ("MR_small.dcm", "MR")):
        shutil.copy(get_testdata_file(name), os.path.join(paths["dicom_root"], name))
        dicom_rows += [
            _conv(name, "Describe the image.", f"A {modality} slice."),
            _conv(name, "What imaging modality is this?", modality),
        ]
    _write_jsonl(paths["dicom"], dicom_rows)
    write_demo_assets(paths["assets"], min_pixels=DEMO_IMAGE_PIXELS)
    open(done, "w").close()
    return paths


def write_demo_assets(assets_dir: str, min_pixels: int | None = None) -> str:
    """Tokenizer (Qwen BPE, first 1,000 ranks) + processor config for small images (the demo data passes
    `min_pixels=DEMO_IMAGE_PIXELS`; tests keep the processor's 56x56 minimum)."""
    from lingshu_jax.model.config import TINY_TOKENIZER_RANKS
    from lingshu_jax.testing.hf_models import PREPROCESSOR_CONFIG
    from lingshu_jax.testing.tokenizer import build_qwen_tokenizer

    os.makedirs(assets_dir, exist_ok=True)
    build_qwen_tokenizer(assets_dir, vocab_size=TINY_TOKENIZER_RANKS)
    with open(os.path.join(assets_dir, "preprocessor_config.json"), "w") as f:
        sizes = {"max_pixels": 28 * 28 * 64, **({"min_pixels": min_pixels} if min_pixels else {})}
        json.dump({**PREPROCESSOR_CONFIG, **sizes}, f, indent=2)
    return assets_dir
