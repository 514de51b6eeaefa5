"""Input-pipeline throughput: ours (grain, N worker processes) vs transformers' Qwen2_5_VLProcessor.

Same samples for both: `--samples` JPEG images of `--image`x`--image` pixels, each in a two-turn VQA
conversation of about `--tokens` tokens, tokenised with the full Qwen2.5-VL vocabulary (built offline from
dashscope's qwen.tiktoken). transformers does the processor call only (image decode, chat template,
tokenize, PIL image processor) in one process; ours does more (labels, M-RoPE ids, packing, window
permutation, padding to the patch budget) in its grain worker processes plus the main process.

Measurement: `--rounds` rounds, each transformers then ours back to back (interleaved: a change of load
from other processes hits both sides); the ratio is the median of the per-round ratios. Each side's rate is
its steady state: the least-squares slope of samples delivered over time after the same `--warmup`
samples; our worker start-up (spawning, unpickling, the first pool of batches) is reported apart. CPU
ms/sample counts every process (grain workers included) over the same window. The default warm-up is
twice `read_ahead_samples`, at least 10% of the samples (at most half): a window that opens earlier still
delivers samples the workers prepared before it, and its rate overstates the steady one. The backlog of
prepared samples only drains at the rate delivery outpaces production, so a window that opens right after
one read-ahead's worth still holds part of it (measured on 2 idle cores, 720 samples with video: 3.21x
with the window after 72 samples, 2.90x after 240; 3 workers: 149 samples/s after 252 samples of 720,
127-129 after 600 of 1440). A ratio above what the CPU costs allow (`cpu_bound`, printed) says the window
still holds such work; so does a rate that falls as `--samples` grows.

Then `--stages` records go through the worker's transform in this process with its stages timed in place
by a plain CPU timer (median ms/sample): decode, to RGB array, resize, patchify, normalise (float32 path
only), tokenize (chat template + tokenizer), M-RoPE ids, the rest (record parsing, labels, ...), packing.

`scripts/bench_data.py` is the command line (`run_report`); `lingshu_jax.bench.data` runs `bench_ours` and
`bench_hf` inside the suite's workers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
import time

import numpy as np
from PIL import Image

from lingshu_jax.bench.data_samples import add_videos, in_formats, make_data, make_mixed

MIN_PIXELS, MAX_PIXELS = 3136, 12845056  # Qwen2.5-VL hub preprocessor_config


@dataclasses.dataclass
class DataBenchOptions:
    """The data benchmark's knobs (scripts/bench_data.py's flags)."""

    samples: int = 800
    worker_counts: tuple[int, ...] = (2,)
    rounds: int = 3
    warmup: int | None = None  # samples left out of the rate (None: default_warmup)
    image: int = 448
    tokens: int = 512
    seq_len: int = 8192
    batch_size: int = 1
    patch_budget: int = 16384
    json_out: str | None = None  # also write the figures here
    mixed: int = 0
    pixel_dtype: str = "uint8"
    stages: int = 120
    workers: int = 2  # the worker count of one `bench_ours` / `efficiency` run
    format: str = "mix"  # ours reads the samples as jsonl (+ JPEG files), parquet (images embedded) or mix
    # (mix_video: mix with every 4th record a video, an mp4 file or a frame folder; data_samples.add_videos)
    video_fps: float = 2.0  # data.video_fps, on both sides

    def __post_init__(self):
        if self.warmup is None:
            self.warmup = default_warmup(self)


def read_ahead_samples(workers: int, samples_per_batch: int) -> int:
    """The most samples `bench_ours`' pipeline (DataConfig defaults, prefetch 2) can hold prepared but not
    yet delivered: per transforming process (each worker, or the main process with 0 workers)
    worker_buffer_size + read_buffer + read_threads groups of `group` records, plus the packer's pool and the
    prefetched batches (pack_pool + prefetch batches of `samples_per_batch`)."""
    from lingshu_jax.data.config import DataConfig

    default = {f.name: f.default for f in dataclasses.fields(DataConfig)}
    groups = default["worker_buffer_size"] + default["read_buffer"] + default["read_threads"]
    return max(1, workers) * groups * default["group"] + (default["pack_pool"] + 2) * samples_per_batch


def default_warmup(args: DataBenchOptions) -> int:
    """Samples left out of the rate by default: twice `read_ahead_samples` for the largest worker count
    timed (samples per batch from seq_len and the tokens of one sample: text + one image), at least 10% of
    the samples and at most half. Twice: the prepared backlog drains only as fast as delivery outpaces
    production (module docstring)."""
    per_sample = args.tokens + (args.image // 28) ** 2
    ahead = read_ahead_samples(max(args.worker_counts), max(1, args.seq_len // per_sample))
    return min(max(2 * ahead, args.samples // 10), args.samples // 2)


def efficiency(path: str, processor, model_config, args) -> None:
    """Prints token and patch utilisation with and without packing."""
    from lingshu_jax.data import make_pipeline

    for packing in (False, True):
        cfg = {
            "sources": [{"name": "mixed", "path": path}],
            "seq_len": args.seq_len,
            "batch_size": args.batch_size,
            "patch_budget": args.patch_budget,
            "packing": packing,
            "worker_count": args.workers,
            "prefetch": 2,
        }
        it = make_pipeline(cfg, None, processor, model_config)
        for _ in it:
            pass
        it.close()
        c = it.counters
        print(
            f"packing={packing}: {c['batches']} batches of [{args.batch_size}, {args.seq_len}], "
            f"{c['segments']} samples; token efficiency {it.packing_efficiency:.3f}, patch budget used "
            f"{c['patches/real'] / c['patches/total']:.3f}, supervised {c['tokens/supervised'] / c['tokens/total']:.3f}"
        )


def hf_processor(tok_dir: str, min_pixels: int, max_pixels: int):
    """transformers' Qwen2_5_VLProcessor with its PIL image processor and, where torchvision imports, its own
    video processor (`Qwen2VLVideoProcessor`, torchvision on CPU tensors). Without torchvision, ours
    (`processing.image.VideoProcessor`, numpy) stands in for the pixels of videos, returning the
    `video_metadata` transformers reads `second_per_grid_ts` from; the class check is bypassed only while
    constructing. `hf_video_processor(processor)` says which one it is."""
    from transformers import AutoTokenizer, Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from lingshu_jax.processing.chat import QWEN25_VL_CHAT_TEMPLATE
    from lingshu_jax.processing.image import VideoProcessor

    video = _transformers_video_processor(VideoProcessor.min_pixels, VideoProcessor.max_pixels)
    parts = dict(
        image_processor=Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels),
        tokenizer=AutoTokenizer.from_pretrained(tok_dir),
        chat_template=QWEN25_VL_CHAT_TEMPLATE,
    )
    if video is not None:
        return Qwen2_5_VLProcessor(video_processor=video, **parts)
    return _with_stand_in_video(Qwen2_5_VLProcessor, parts)


def _transformers_video_processor(min_pixels: int, max_pixels: int):
    """transformers' Qwen2VLVideoProcessor with our video defaults (frames already sampled by `hf_video`), or
    None where torchvision does not import."""
    try:
        from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor
    except (ImportError, RuntimeError, OSError):
        return None
    return Qwen2VLVideoProcessor(
        min_pixels=min_pixels, max_pixels=max_pixels, do_sample_frames=False, cap_pixels_per_frame=False
    )


def hf_video_processor(processor) -> str:
    """What transformers' side processes videos with (printed beside its figures)."""
    video = processor.video_processor
    if getattr(video, "stand_in", False):
        return "ours stands in for its video processor (torchvision does not import here)"
    import torchvision

    return f"its {type(video).__name__} (torchvision {torchvision.__version__})"


def _with_stand_in_video(processor_cls, parts: dict):
    import transformers.processing_utils as pu
    from transformers.image_processing_base import BatchFeature
    from transformers.video_processing_utils import VideoProcessorMixin

    from lingshu_jax.processing.image import VideoProcessor

    class StandInVideo(VideoProcessorMixin):
        merge_size, temporal_patch_size = 2, 2
        stand_in = True  # (hf_video_processor)

        def __init__(self):
            self.pixels = VideoProcessor()

        def __call__(self, videos, video_metadata=None, **kwargs):
            out = self.pixels(videos)
            return BatchFeature(
                {
                    "pixel_values_videos": out["pixel_values_videos"],
                    "video_grid_thw": out["video_grid_thw"],
                    "video_metadata": video_metadata,
                }
            )

    saved = pu.ProcessorMixin.__dict__["get_possibly_dynamic_module"]
    original = pu.ProcessorMixin.get_possibly_dynamic_module
    pu.ProcessorMixin.get_possibly_dynamic_module = staticmethod(
        lambda name: VideoProcessorMixin if name == "VideoProcessorMixin" else original(name)
    )
    try:
        return processor_cls(video_processor=StandInVideo(), **parts)
    finally:
        pu.ProcessorMixin.get_possibly_dynamic_module = saved


def _cpu() -> float:
    """CPU seconds of this process and of its finished (joined) children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _live_children_cpu() -> float:
    """CPU seconds so far of this process's live descendants (grain's worker processes, not yet joined)."""
    import psutil

    total = 0.0
    for proc in psutil.Process().children(recursive=True):
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def steady_rate(times: list[float], counts: list[int]) -> float:
    """Samples/s: least-squares slope of the cumulative sample count over its timestamps.

    Both sides are timed this way, after the same warm-up. A slope over every delivery, rather than the
    first and last, is not biased by work done ahead of the window's start (grain's buffers, the packer's
    pool of batches emitted together)."""
    t, c = np.asarray(times, np.float64), np.asarray(counts, np.float64)
    if len(t) < 2 or np.ptp(t) <= 0:
        raise ValueError(f"{len(t)} timestamps: too few deliveries after warm-up to measure a rate")
    return float(np.polyfit(t - t[0], c, 1)[0])


def _hf_messages(record: dict) -> list[dict]:
    def content(text: str) -> list[dict]:
        for tag in ("image", "video"):
            if text.startswith(f"<{tag}>"):
                return [{"type": tag}, {"type": "text", "text": text[len(tag) + 2 :]}]
        return [{"type": "text", "text": text}]

    return [{"role": m["role"], "content": content(m["content"])} for m in record["messages"]]


def hf_video(path: str, fps: float, max_frames: int = 64):
    """A video as a transformers user reads it -> (frames, VideoMetadata): a file through transformers'
    `read_video_pyav` sampled at `fps` (the Qwen2-VL rule, `processing.video.sample_indices`), a frame folder
    as its PIL frames taken as sampled at `fps` (what our pipeline does with folders)."""
    from transformers.video_utils import VideoMetadata, read_video_pyav

    from lingshu_jax.processing.video import sample_indices

    if not os.path.isdir(path):
        return read_video_pyav(
            path,
            lambda metadata, **_: sample_indices(metadata.total_num_frames, metadata.fps, fps, max_frames),
        )
    names = sorted(os.listdir(path), key=lambda n: int(os.path.splitext(n)[0]))
    keep = np.round(np.linspace(0, len(names) - 1, min(len(names), max_frames))).astype(int)
    frames = [Image.open(os.path.join(path, names[i])).convert("RGB") for i in keep]
    meta = VideoMetadata(total_num_frames=len(names), fps=fps * len(keep) / len(names), frames_indices=keep)
    return frames, meta


def bench_hf(processor, path: str, root: str, warmup: int = 0, video_fps: float = 2.0) -> dict:
    """transformers over every record of `path` (image / video decode, chat template, processor call), one
    process.

    The steady rate and CPU are over the records after the first `warmup`."""
    with open(path) as f:
        records = [json.loads(line) for line in f]
    warmup = min(warmup, len(records) - 2)
    times, counts, tokens = [], [], 0
    start = cpu = None
    for i, r in enumerate(records):
        if i == warmup:
            start, cpu = time.perf_counter(), _cpu()
            times.append(start), counts.append(0)
        images = [Image.open(os.path.join(root, p)).convert("RGB") for p in r.get("images", [])]
        videos = [hf_video(os.path.join(root, p), video_fps) for p in r.get("videos", [])]
        text = processor.apply_chat_template(_hf_messages(r), tokenize=False)
        kw = {"videos": [v for v, _ in videos], "video_metadata": [m for _, m in videos]} if videos else {}
        out = processor(text=[text], images=images or None, return_tensors="np", **kw)
        tokens += out["input_ids"].shape[1]
        if i >= warmup:
            times.append(time.perf_counter()), counts.append(i + 1 - warmup)
    return {
        "samples": len(records),
        "steady_s": times[-1] - start,
        "steady_samples": len(records) - warmup,
        "samples_per_s_steady": steady_rate(times, counts),
        "steady_cpu_ms_per_sample": 1e3 * (_cpu() - cpu) / (len(records) - warmup),
        "tokens": tokens,
    }


def bench_ours(path: str | list[str], processor, model_config, args) -> dict:
    """Our pipeline over every record of `path` (or of the files `path` lists, concatenated in order: one
    source each), to packed model-ready batches (the batches are dropped).

    Start-up (worker processes, first pool of batches) is reported apart: the steady rate is the slope of
    samples delivered over time after `args.warmup` samples (at least the first batch), and the steady CPU
    is that of every process (workers included) over the same window, per steady sample."""
    from lingshu_jax.data import make_pipeline

    paths = [path] if isinstance(path, str) else list(path)
    cfg = {
        "sources": [{"name": f"bench{i}", "path": p} for i, p in enumerate(paths)],
        "seq_len": args.seq_len,
        "batch_size": args.batch_size,
        "patch_budget": args.patch_budget,
        "packing": True,
        "shuffle": False,
        "worker_count": args.workers,
        "prefetch": 2,
        "pixel_dtype": getattr(args, "pixel_dtype", "uint8"),
        "video_fps": getattr(args, "video_fps", 2.0),
    }
    warmup = getattr(args, "warmup", 0)
    start, cpu = time.perf_counter(), _cpu()
    it = make_pipeline(cfg, None, processor, model_config)
    times, counts = [], []
    for _ in it:
        n = int(it.counters["segments"])
        if not times and n >= warmup:  # the window opens at this delivery
            t_first, n_first = time.perf_counter(), n
            cpu_first = _cpu() + _live_children_cpu()
        if times or n >= warmup:
            times.append(time.perf_counter()), counts.append(n)
    end = time.perf_counter()
    # The window's CPU ends with the last delivery: the workers, done, are idle until close() (which
    # joins them and frees the pipeline: shutdown work that is no sample's cost).
    cpu_end = _cpu() + _live_children_cpu()
    it.close()
    samples = int(it.counters["segments"])
    rate = steady_rate(times, counts) if len(times) >= 2 else float("nan")
    return {
        "total_s": end - start,
        "startup_s": t_first - start,  # to the first delivery of the window (first batch without warm-up)
        "steady_s": end - t_first,
        "steady_samples": samples - n_first,
        "samples_per_s_steady": rate,
        "cpu_s": _cpu() - cpu,
        "steady_cpu_s": cpu_end - cpu_first,
        "steady_cpu_ms_per_sample": 1e3 * (cpu_end - cpu_first) / (rate * (end - t_first)),
        "samples": samples,
        "efficiency": it.packing_efficiency,
        "tokens": int(it.counters["tokens/real"]),
        "skipped": {k: v for k, v in it.counters.items() if k.startswith("skipped/")},
    }


class StageTimer:
    """Wraps functions so each call's CPU milliseconds (this thread's: immune to other processes taking the
    CPU away) add to the current record's stage total."""

    def __init__(self):
        self.records: list[dict[str, float]] = []

    def wrap(self, stage: str, fn):
        def timed(*a, **kw):
            t = time.thread_time()
            try:
                return fn(*a, **kw)
            finally:
                record = self.records[-1]
                record[stage] = record.get(stage, 0.0) + 1e3 * (time.thread_time() - t)

        return timed

    @contextlib.contextmanager
    def patched(self, module, stages: dict[str, str]):
        """Times module-level functions (attribute -> stage) where the module looks them up."""
        saved = {name: getattr(module, name) for name in stages}
        for name, stage in stages.items():
            setattr(module, name, self.wrap(stage, saved[name]))
        try:
            yield
        finally:
            for name, fn in saved.items():
                setattr(module, name, fn)


def stage_costs(path: str, root: str, processor, model_config, args) -> dict[str, float]:
    """Median CPU ms/sample of each host stage: the worker's SampleTransform run record by record in this
    process with its image, tokenizer and rope functions timed in place; then packing (main process)."""
    from lingshu_jax.data import BatchBuilder, ErrorPolicy, Ops, transforms
    from lingshu_jax.processing import image

    timer = StageTimer()
    ops = Ops.from_processor(processor, model_config, pixel_dtype=args.pixel_dtype)
    ops = dataclasses.replace(
        ops,
        load_image=timer.wrap("decode", ops.load_image),
        encode=timer.wrap("tokenize", ops.encode),
        rope_index=timer.wrap("rope ids", ops.rope_index),
        load_video=timer.wrap("video file decode", ops.load_video),
    )
    transform = transforms.SampleTransform(
        ops=ops,
        policy=ErrorPolicy("error"),
        seq_len=args.seq_len,
        patch_budget=args.patch_budget,
        roots=[root],
        names=["bench"],
        video_fps=args.video_fps,
    )
    stages = {
        "to_rgb_array": "to RGB array",
        "resize_rgb": "resize",
        "patchify_image": "patchify",
        "patchify_frames": "patchify",
        "normalize_rows": "normalise (float32 path)",
    }
    builder_kwargs = dict(
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        patch_budget=args.patch_budget,
        segments_per_row=args.seq_len,
        pad_id=ops.pad_id,
        image_token_id=ops.image_token_id,
        video_token_id=ops.video_token_id,
        merge_size=ops.merge_size,
        window_merge_units=ops.window_merge_units,
        pixel_normalization=ops.pixel_normalization,
    )
    with open(path, "rb") as f:
        lines = f.readlines()[: args.stages]
    pack_ms, builder = 0.0, BatchBuilder(**builder_kwargs)
    with timer.patched(image, stages):
        for i, line in enumerate(lines):
            timer.records.append({})
            t = time.thread_time()
            sample = transform({"data": line, "where": f"{path}:{i + 1}", "source": 0})
            record = timer.records[-1]
            record["rest of the transform"] = 1e3 * (time.thread_time() - t) - sum(record.values())
            t = (
                time.thread_time()
            )  # packed as it comes (as the pipeline does: built batches free the samples)
            if not builder.add(sample):
                builder.build()
                builder = BatchBuilder(**builder_kwargs)
                builder.add(sample)
            pack_ms += 1e3 * (time.thread_time() - t)
    t = time.thread_time()
    builder.build()
    pack_ms += 1e3 * (time.thread_time() - t)
    names = ["decode", "video file decode", *stages.values(), "tokenize", "rope ids", "rest of the transform"]
    med = {k: float(np.median([r.get(k, 0.0) for r in timer.records])) for k in names}
    med["pack (main process, mean)"] = pack_ms / len(lines)
    return med


def load_average() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def run_rounds(
    args, path: str, root: str, hf, ours_proc, model_config, ours_path: list[str] | None = None
) -> dict:
    """`args.rounds` rounds, each transformers then ours per worker count, back to back on the same samples
    (interleaved, so a change of machine load hits both sides); ratios are per round. Ours reads
    `ours_path` (the same samples in another format) when given."""
    rounds = []
    for r in range(args.rounds):
        row = {
            "load_before": os.getloadavg(),
            "hf": bench_hf(hf, path, root, args.warmup, args.video_fps),
            "ours": {},
        }
        hf_rate = row["hf"]["samples_per_s_steady"]
        hf_cpu = row["hf"]["steady_cpu_ms_per_sample"]
        print(
            f"round {r + 1}/{args.rounds} ({load_average()}): transformers {hf_rate:6.1f} samples/s, "
            f"{hf_cpu:.1f} CPU ms/sample ({hf_rate * hf_cpu / 1e3:.2f} cores busy)"
        )
        for workers in args.worker_counts:
            args_w = dataclasses.replace(args, workers=workers)
            ours = bench_ours(ours_path or path, ours_proc, model_config, args_w)
            ours["ratio"] = ours["samples_per_s_steady"] / hf_rate
            row["ours"][workers] = ours
            rate, cpu_ms = ours["samples_per_s_steady"], ours["steady_cpu_ms_per_sample"]
            print(
                f"  ours, {workers_label(workers)}: {rate:6.1f} samples/s -> {ours['ratio']:.2f}x; {cpu_ms:.1f} CPU "
                f"ms/sample (all processes; {rate * cpu_ms / 1e3:.2f} cores busy); start-up "
                f"{ours['startup_s']:.1f} s; packing efficiency {ours['efficiency']:.3f}"
            )
        row["load_after"] = os.getloadavg()
        rounds.append(row)
    return summarize(rounds, args.worker_counts)


def workers_label(workers: int) -> str:
    return f"{workers} worker processes" if workers else "in-process (threads)"


def summarize(rounds: list[dict], worker_counts: list[int]) -> dict:
    """Medians over rounds of the rates, CPU per sample and per-round ratios."""

    def med(xs):
        return float(np.median(xs))

    hf = [r["hf"] for r in rounds]
    out = {
        "rounds": rounds,
        "hf_samples_per_s": med([h["samples_per_s_steady"] for h in hf]),
        "hf_cpu_ms_per_sample": med([h["steady_cpu_ms_per_sample"] for h in hf]),
        "ours": {},
    }
    for w in worker_counts:
        runs = [r["ours"][w] for r in rounds]
        out["ours"][w] = {
            "samples_per_s_steady": med([o["samples_per_s_steady"] for o in runs]),
            "cpu_ms_per_sample_steady": med([o["steady_cpu_ms_per_sample"] for o in runs]),
            "startup_s": med([o["startup_s"] for o in runs]),
            "ratio_median": med([o["ratio"] for o in runs]),
            "ratios": [o["ratio"] for o in runs],
        }
    return out


def cpu_bound(hf_cpu_ms: float, ours_cpu_ms: float, cpus: int | None = None) -> float:
    """The highest ratio the CPU costs allow: ours on every CPU vs transformers in one process."""
    return (cpus or os.cpu_count()) * hf_cpu_ms / ours_cpu_ms


def run_report(args: DataBenchOptions) -> dict:
    """The command line's run: writes the samples to a temporary directory, times both sides in interleaved
    rounds, prints the figures (and the per-stage costs), returns them (also to `args.json_out` if set)."""
    from absl import flags

    flags.FLAGS.mark_as_parsed()
    from lingshu_jax.model.config import preset
    from lingshu_jax.processing.image import ImageProcessor
    from lingshu_jax.processing.processor import Processor
    from lingshu_jax.processing.tokenizer import Tokenizer
    from lingshu_jax.testing.tokenizer import build_qwen_tokenizer

    root = tempfile.mkdtemp(prefix="bench_data_")
    tok_dir = build_qwen_tokenizer(os.path.join(root, "tok"))
    min_pixels, max_pixels = MIN_PIXELS, MAX_PIXELS
    ours_proc = Processor(
        Tokenizer.from_pretrained(tok_dir), ImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels)
    )
    if args.mixed:
        args = dataclasses.replace(args, workers=args.worker_counts[0])
        efficiency(make_mixed(root, args.mixed), ours_proc, preset("qwen2.5-vl-7b"), args)
        return {}
    path = make_data(root, args.samples, args.image, args.tokens)
    if args.format == "mix_video":
        n = add_videos(path, root)
        print(f"{n} of the records are videos (mp4 files and frame folders, alternately; 16 frames at 8 fps)")
    ours_path = in_formats(path, root, args.format)
    hf = hf_processor(tok_dir, min_pixels, max_pixels)
    print(
        f"machine: {os.cpu_count()} CPUs, {load_average()} (other processes count too); {args.samples} samples of "
        f"{args.image}x{args.image} JPEG + ~{args.tokens} tokens; rates after the first {args.warmup} samples"
    )
    print(
        f"ours reads {args.format} ({', '.join(ours_path)}); transformers reads the JSONL and the JPEG files"
    )
    out = run_rounds(args, path, root, hf, ours_proc, preset("qwen2.5-vl-7b"), ours_path)
    out.update(samples=args.samples, image=args.image, warmup=args.warmup, cpus=os.cpu_count())
    out["tokens_per_sample"] = out["rounds"][0]["hf"]["tokens"] / args.samples
    print(
        f"transformers Qwen2_5_VLProcessor (PIL images; videos: {hf_video_processor(hf)}), 1 process: "
        f"{out['hf_samples_per_s']:.1f} samples/s, "
        f"{out['hf_cpu_ms_per_sample']:.1f} CPU ms/sample ({out['tokens_per_sample']:.0f} tokens/sample); "
        f"medians of {args.rounds} rounds"
    )
    for w, o in out["ours"].items():
        bound = cpu_bound(out["hf_cpu_ms_per_sample"], o["cpu_ms_per_sample_steady"])
        o["cpu_bound"] = bound
        print(
            f"lingshu_jax.data, {workers_label(w)}: {o['samples_per_s_steady']:.1f} samples/s steady, "
            f"RATIO {o['ratio_median']:.2f}x (median; rounds {', '.join(f'{x:.2f}' for x in o['ratios'])}); "
            f"{o['cpu_ms_per_sample_steady']:.1f} CPU ms/sample (all processes; at most {bound:.2f}x on "
            f"{os.cpu_count()} idle CPUs); worker start-up {o['startup_s']:.1f} s (not in the rate)"
        )
        if o["ratio_median"] > bound:
            print(
                f"  the ratio is above what the CPU costs allow ({bound:.2f}x): the window still holds work "
                f"done before it (warm-up {args.warmup} samples); use more --samples or a larger --warmup"
            )
    print(f"end: {load_average()}")
    if args.stages:
        costs = stage_costs(path, root, ours_proc, preset("qwen2.5-vl-7b"), args)
        out["stages_ms_per_sample"] = costs
        n = min(args.stages, args.samples)
        print(f"host stages, median CPU ms/sample over {n} records (pixel_dtype={args.pixel_dtype}):")
        for stage, ms in costs.items():
            print(f"  {stage:32s} {ms:6.2f}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(out, f, indent=2, default=float)
    return out
