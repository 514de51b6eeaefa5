"""Video files (mp4, webm, avi, mov, mkv, ... whatever FFmpeg reads) -> sampled RGB frames, with PyAV.

Frames are sampled from the stream's own rate (its `average_rate`) as transformers' Qwen2-VL video
processor samples them (`Qwen2VLVideoProcessor.sample_frames` with `fps`, read through
`video_utils.read_video_pyav`):

  n = total_frames / native_fps * fps, clamped to [MIN_FRAMES, min(max_frames, total_frames)] and floored
  to a multiple of temporal_patch_size; indices = arange(0, total, total / n) truncated to int;
  sampled_fps = n / total_frames * native_fps   (-> second_per_grid_ts = temporal_patch_size / sampled_fps)

Only the kept frames are converted to RGB; decoding stops after the last kept frame.
"""

from __future__ import annotations

import io
import math
from typing import BinaryIO

import numpy as np

MIN_FRAMES = 4  # transformers' Qwen2VLVideoProcessor.min_frames


def sample_indices(
    total: int, native_fps: float, fps: float, max_frames: int, temporal_patch_size: int = 2
) -> np.ndarray:
    """[n] int64 frame indices of a `total`-frame video at `native_fps`, sampled at `fps` (<= max_frames).

    A video shorter than one temporal patch keeps all its frames (the processor repeats the last one).
    """
    if total < 1:
        raise ValueError("the video has no frames")
    cap = math.floor(min(max_frames, total) / temporal_patch_size) * temporal_patch_size
    if cap == 0:
        return np.arange(total, dtype=np.int64)
    n = min(max(total / native_fps * fps, MIN_FRAMES), cap, total)
    n = math.floor(n / temporal_patch_size) * temporal_patch_size
    return np.arange(0, total, total / n).astype(np.int64)[:n]


def read_video(
    source: str | bytes | BinaryIO, fps: float, max_frames: int, temporal_patch_size: int = 2
) -> tuple[list, float]:
    """A video file (a path, the file's bytes, or a seekable binary file object) -> (kept frames, each
    [H, W, 3] uint8, their rate per second). Bytes (a Parquet / Arrow video column) decode from memory.

    Raises ValueError naming the file for a file without a video stream, without a frame rate, or that
    ends before its last kept frame (truncated); FFmpeg's own errors (av.error.*) pass through.
    """
    import av  # a dependency; imported here so that image-only pipelines never load FFmpeg

    if isinstance(source, (bytes, bytearray, memoryview)):
        path, source = f"<video of {len(source)} bytes>", io.BytesIO(source)
    else:
        path = source if isinstance(source, str) else getattr(source, "name", "<video file object>")
    with av.open(source) as container:
        if not container.streams.video:
            raise ValueError(f"{path}: no video stream (streams: {[s.type for s in container.streams]})")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        if not rate:
            raise ValueError(f"{path}: the video stream has no frame rate")
        total = stream.frames or sum(1 for p in container.demux(stream) if p.size)
        keep = sample_indices(int(total), float(rate), fps, max_frames, temporal_patch_size)
        container.seek(0)
        wanted, frames = set(keep.tolist()), []
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                frames.append(frame.to_ndarray(format="rgb24"))
            if i >= keep[-1]:
                break
    if len(frames) < len(keep):
        raise ValueError(
            f"{path}: the video ends after {len(frames)} of its {len(keep)} sampled frames "
            f"(its header says {total} frames; truncated?)"
        )
    return frames, len(keep) / total * float(rate)
