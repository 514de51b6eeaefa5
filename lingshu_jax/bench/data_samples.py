"""Synthetic data for the data-pipeline benchmark: JPEGs + LLaMA-Factory JSONL records, seeded.

make_data   n records of one shape (one `side`x`side` JPEG + about `tokens` tokens each)
make_mixed  caption + VQA + text-only records, images of several sizes (packing efficiency)
add_videos  every k-th record of a make_data JSONL becomes a video record: an mp4 file (PyAV) or a frame
            folder of JPEGs, alternately
to_parquet  the same records as a Parquet file the way Hugging Face `datasets` writes image data
in_formats  the records as the files our side reads: JSONL, Parquet, or a mix (first half JSONL, second
            Parquet); "mix_video" is the mix after add_videos
"""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image

WORDS = (
    "the chest radiograph shows a small nodule in the right upper lobe with no pleural effusion and a normal "
    "cardiac silhouette findings are consistent with early pneumonia follow up imaging is recommended"
).split()


def make_data(root: str, n: int, side: int, tokens: int, seed: int = 0) -> str:
    """n JPEGs + a JSONL of LLaMA-Factory records (about `tokens` tokens each); returns the JSONL path."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side]
    path = os.path.join(root, "data.jsonl")
    with open(path, "w") as f:
        for i in range(n):
            base = (np.sin(xx / (7 + i % 5)) + np.cos(yy / (11 + i % 3))) * 60 + 128
            img = np.clip(base[..., None] + rng.normal(0, 20, (side, side, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(os.path.join(root, f"{i}.jpg"), quality=90)
            words = rng.choice(WORDS, size=int(tokens * 0.8))  # ~1.2 tokens per word with the template
            q, a = " ".join(words[: len(words) // 3]), " ".join(words[len(words) // 3 :])
            f.write(
                json.dumps(
                    {
                        "messages": [
                            {"role": "user", "content": f"<image>{q}"},
                            {"role": "assistant", "content": a},
                        ],
                        "images": [f"{i}.jpg"],
                    }
                )
                + "\n"
            )
    return path


def make_mixed(root: str, n: int, seed: int = 0) -> str:
    """Caption (image + 20..120-word caption), VQA (image + short question/answer) and text-only QA
    (60..600 words) records, a third each; images 224..896 px. Returns the JSONL path."""
    rng = np.random.default_rng(seed)
    words = lambda k: " ".join(rng.choice(WORDS, size=int(k)))  # noqa: E731
    path = os.path.join(root, "mixed.jsonl")
    with open(path, "w") as f:
        for i in range(n):
            kind = i % 3
            if kind == 2:
                msgs = [
                    {"role": "user", "content": words(rng.integers(20, 200))},
                    {"role": "assistant", "content": words(rng.integers(40, 400))},
                ]
                f.write(json.dumps({"messages": msgs}) + "\n")
                continue
            h, w = (int(rng.integers(8, 33)) * 28 for _ in range(2))
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
                os.path.join(root, f"m{i}.jpg")
            )
            q, a = (
                ("Describe the image.", words(rng.integers(20, 120)))
                if kind == 0
                else (words(rng.integers(5, 30)) + "?", words(rng.integers(1, 10)))
            )
            msgs = [{"role": "user", "content": "<image>" + q}, {"role": "assistant", "content": a}]
            f.write(json.dumps({"messages": msgs, "images": [f"m{i}.jpg"]}) + "\n")
    return path


def _video_frames(rng, n: int, side: int, i: int) -> list[np.ndarray]:
    """n smooth moving frames (uint8 [side, side, 3]) with some noise, like a short ultrasound clip."""
    yy, xx = np.mgrid[0:side, 0:side]
    return [
        np.clip(
            ((np.sin((xx + 4 * t) / (7 + i % 5)) + np.cos(yy / (11 + i % 3))) * 60 + 128)[..., None]
            + rng.normal(0, 10, (side, side, 3)),
            0,
            255,
        ).astype(np.uint8)
        for t in range(n)
    ]


def add_videos(
    jsonl_path: str, root: str, every: int = 4, frames: int = 16, rate: int = 8, side: int = 224
) -> int:
    """Rewrites `jsonl_path` with every `every`-th record a LLaMA-Factory video record (`<video>` +
    `videos`): `frames` frames of side x side, as an mp4 file at `rate` fps (mpeg4, PyAV) and as a folder of
    JPEG frames, alternately. Returns the number of video records."""
    import av

    rng = np.random.default_rng(1)
    with open(jsonl_path) as f:
        records = [json.loads(line) for line in f]
    n = 0
    for i in range(every - 1, len(records), every):
        clip = _video_frames(rng, frames, side, i)
        if n % 2 == 0:
            ref = f"v{i}.mp4"
            with av.open(os.path.join(root, ref), "w") as container:
                stream = container.add_stream("mpeg4", rate=rate)
                stream.height = stream.width = side
                stream.pix_fmt = "yuv420p"
                for frame in clip:
                    container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
                container.mux(stream.encode())
        else:
            ref = f"v{i}"
            os.makedirs(os.path.join(root, ref), exist_ok=True)
            for t, frame in enumerate(clip):
                Image.fromarray(frame).save(os.path.join(root, ref, f"{t}.jpg"), quality=90)
        user = records[i]["messages"][0]
        user["content"] = "<video>" + user["content"].removeprefix("<image>")
        records[i] = {"messages": records[i]["messages"], "videos": [ref]}
        n += 1
    with open(jsonl_path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    return n


def to_parquet(jsonl_path: str, root: str, out_path: str, row_group_size: int = 100) -> str:
    """The records of `jsonl_path` as Parquet: `messages` as is, `images` as a list of `datasets` Image
    structs {bytes, path} with the encoded files embedded, `row_group_size` rows per group (100: what
    `datasets` writes for image data). Returns out_path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    turn = pa.struct([("role", pa.string()), ("content", pa.string())])
    fields = [("messages", pa.list_(turn)), ("images", pa.list_(image))]
    with open(jsonl_path) as f:
        lines = f.readlines()
    if any('"videos"' in line for line in lines):
        fields.append(("videos", pa.list_(pa.string())))  # paths (files or frame folders) under the root
    schema = pa.schema(fields)
    with pq.ParquetWriter(out_path, schema) as writer:
        rows = []
        for line in lines:
            r = json.loads(line)
            images = []
            for p in r.get("images", []):
                with open(os.path.join(root, p), "rb") as im:
                    images.append({"bytes": im.read(), "path": p})
            row = {"messages": r["messages"], "images": images}
            if len(fields) == 3:
                row["videos"] = r.get("videos", [])
            rows.append(row)
            if len(rows) == row_group_size:
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                rows = []
        if rows:
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))
    return out_path


def in_formats(jsonl_path: str, root: str, fmt: str) -> list[str]:
    """The records of `jsonl_path` (in order) as the files our pipeline reads, concatenated: "jsonl" (the
    file itself), "parquet" (one Parquet file) or "mix" (the first half as JSONL, the rest as Parquet);
    "mix_video" is "mix" of a JSONL that add_videos has rewritten."""
    if fmt == "mix_video":
        fmt = "mix"
    if fmt == "jsonl":
        return [jsonl_path]
    if fmt == "parquet":
        return [to_parquet(jsonl_path, root, os.path.join(root, "data.parquet"))]
    if fmt != "mix":
        raise ValueError(f"format={fmt!r}: expected jsonl, parquet, mix or mix_video")
    with open(jsonl_path) as f:
        lines = f.readlines()
    half = len(lines) // 2
    first, rest = os.path.join(root, "mix_first.jsonl"), os.path.join(root, "mix_rest.jsonl")
    for path, part in ((first, lines[:half]), (rest, lines[half:])):
        with open(path, "w") as f:
            f.writelines(part)
    return [first, to_parquet(rest, root, os.path.join(root, "mix_rest.parquet"))]
