"""Video files read with PyAV (processing/video.py): the frames and their rate are what transformers'
`read_video_pyav` + `Qwen2VLVideoProcessor.sample_frames(fps=...)` give, whatever the container and codec;
a file without frames, without a video stream or cut short is an error naming it."""

import types

import av
import numpy as np
import pytest
from transformers.video_utils import read_video_pyav

from lingshu_jax.processing.video import MIN_FRAMES, read_video, sample_indices

from .helpers import transformers_video_code, write_video


def _hf_sampler(defaults):
    sample_frames, _ = transformers_video_code("sample_frames")
    self = types.SimpleNamespace(
        num_frames=None, fps=None, **{k: defaults[k] for k in ("temporal_patch_size",)}
    )
    self.min_frames, self.max_frames = defaults["min_frames"], defaults["max_frames"]
    return lambda metadata, fps, max_frames: sample_frames(self, metadata, fps=fps, max_frames=max_frames)


def test_min_frames_is_transformers_default():
    _, defaults = transformers_video_code("sample_frames")
    assert MIN_FRAMES == defaults["min_frames"]


@pytest.mark.parametrize(
    "total,native,fps,max_frames",
    [
        (12, 6, 3.0, 64),
        (12, 6, 2.0, 4),
        (12, 6, 1.0, 64),
        (30, 25, 2.0, 64),
        (100, 30, 2.0, 8),
        (7, 5, 2.0, 64),
    ],
)
def test_sample_indices_equal_transformers_sample_frames(total, native, fps, max_frames):
    from transformers.video_utils import VideoMetadata

    _, defaults = transformers_video_code("sample_frames")
    meta = VideoMetadata(total_num_frames=total, fps=native)
    ref = _hf_sampler(defaults)(meta, fps, max_frames)
    np.testing.assert_array_equal(sample_indices(total, native, fps, max_frames), np.asarray(ref))


@pytest.mark.parametrize("fps,max_frames", [(3.0, 64), (2.0, 64), (6.0, 4)])
def test_mp4_frames_and_rate_equal_transformers_read_video_pyav(tmp_path, fps, max_frames):
    path = write_video(tmp_path / "clip.mp4", n=12, rate=6)
    _, defaults = transformers_video_code("sample_frames")
    sampler = _hf_sampler(defaults)
    ref, meta = read_video_pyav(path, lambda metadata, **_: sampler(metadata, fps, max_frames))
    frames, rate = read_video(path, fps, max_frames)
    assert len(frames) == len(ref) and len(frames) % 2 == 0
    np.testing.assert_array_equal(np.stack(frames), ref)
    assert rate == pytest.approx(meta.sampled_fps)


def test_a_webm_without_a_frame_count_is_counted_then_sampled(tmp_path):
    path = write_video(tmp_path / "clip.webm", n=12, rate=6, codec="libvpx")
    with av.open(path) as c:
        assert c.streams.video[0].frames == 0  # the container does not say; the reader counts packets
        every = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    frames, rate = read_video(path, fps=3.0, max_frames=64)
    np.testing.assert_array_equal(np.stack(frames), np.stack(every[::2]))
    assert rate == pytest.approx(3.0)


def test_unreadable_videos_raise_naming_the_file(tmp_path):
    audio = tmp_path / "sound.wav"
    with av.open(str(audio), "w") as c:
        s = c.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        c.mux(s.encode(frame))
        c.mux(s.encode())
    with pytest.raises(ValueError, match=r"sound\.wav: no video stream"):
        read_video(str(audio), 2.0, 64)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(av.error.FFmpegError, match="garbage.mp4"):
        read_video(str(garbage), 2.0, 64)


def test_a_video_cut_short_raises_naming_the_file_and_the_missing_frames(tmp_path):
    whole = open(write_video(tmp_path / "clip.avi", n=12, rate=6), "rb").read()
    (tmp_path / "cut.avi").write_bytes(whole[: len(whole) // 2])  # the AVI header still says 12 frames
    with pytest.raises(ValueError, match=r"cut\.avi: the video ends after 1 of its 4 sampled frames"):
        read_video(str(tmp_path / "cut.avi"), 2.0, 64)


def test_the_processor_reads_a_video_file_as_the_frames_it_samples(tmp_path, small_tok_dir):
    from lingshu_jax.processing import Processor
    from lingshu_jax.processing.image import VideoProcessor
    from lingshu_jax.processing.tokenizer import Tokenizer

    processor = Processor(
        Tokenizer.from_pretrained(small_tok_dir), video_processor=VideoProcessor(max_pixels=56 * 84)
    )
    path = write_video(tmp_path / "clip.mp4", n=12, rate=6)
    conv = [
        {"role": "user", "content": [{"type": "video", "video": path}, {"type": "text", "text": "What?"}]}
    ]
    got = processor(conv, video_fps=3.0)
    frames, rate = read_video(path, 3.0, 768)
    conv[0]["content"][0]["video"] = frames
    want = processor(conv, video_fps=rate)
    assert got.keys() == want.keys()
    for k in got:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    np.testing.assert_allclose(got["second_per_grid_ts"], [2 / 3])
    assert got["video_grid_thw"][0, 0] == 3  # 6 of 12 frames, 2 per temporal patch
