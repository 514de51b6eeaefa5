"""Writers of small PNG / JSONL datasets for the data tests, and a time limit for tests of endings."""

import contextlib
import json
import os
import signal

import numpy as np
from PIL import Image

from lingshu_jax.data import DataConfig


@contextlib.contextmanager
def time_limit(seconds):
    """TimeoutError in the main thread after `seconds` (SIGALRM), so that a hang fails the test instead of
    passing it."""

    def _expired(signum, frame):
        raise TimeoutError(f"the data pipeline did not answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def write_png(path, size=(64, 64), seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def write_jsonl(path, records):
    with open(path, "w") as f:
        for r in records:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return str(path)


def vqa(image, q="What is shown?", a="A scan of the chest."):
    """HF/Qwen typed-content record with one image."""
    return {
        "messages": [
            {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": q}]},
            {"role": "assistant", "content": [{"type": "text", "text": a}]},
        ]
    }


def text_only(q="Define anemia.", a="A lack of red blood cells or hemoglobin."):
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def mixed_dataset(root, n=24, seed=0):
    """Caption + VQA + text-only records with images of a few sizes under root; returns the jsonl path."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        kind = i % 3
        if kind == 2:
            records.append(
                text_only(
                    q=f"Question {i}: " + "word " * int(rng.integers(2, 40)),
                    a="answer " * int(rng.integers(1, 20)),
                )
            )
            continue
        side = int(rng.choice([56, 84, 112]))
        write_png(os.path.join(root, "img", f"{i}.png"), (side, side), seed=i)
        if kind == 0:
            records.append(
                {
                    "messages": [
                        {"role": "user", "content": "<image>Describe the image."},
                        {"role": "assistant", "content": "caption " * int(rng.integers(3, 30))},
                    ],
                    "images": [f"img/{i}.png"],
                }
            )
        else:
            records.append(
                vqa(f"img/{i}.png", q=f"Is there a lesion {i}?", a="yes " * int(rng.integers(1, 4)))
            )
    return write_jsonl(os.path.join(root, "data.jsonl"), records)


def data_config(path, **kw):
    base = dict(
        sources=[{"name": "mixed", "path": path}], seq_len=256, batch_size=2, patch_budget=256, packing=True
    )
    base.update(kw)
    return DataConfig.from_dict(base)


def write_bomb_png(path, width=30000, height=30000):
    """A tiny PNG file whose header claims width x height pixels (a decompression bomb's signature)."""
    import io
    import struct
    import zlib

    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = 8 + 8  # signature, then length + b"IHDR"
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13])))
    with open(path, "wb") as f:
        f.write(bytes(data))
    return path
