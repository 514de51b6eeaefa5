"""Helpers for processing tests: random images, transformers' reference processor and video code."""

import ast
import inspect
import math

import numpy as np
from PIL import Image

from lingshu_jax.processing.chat import QWEN25_VL_CHAT_TEMPLATE
from lingshu_jax.processing.image import VideoProcessor

SMALL_VOCAB = 4096


def rgb(height: int, width: int, seed: int = 0) -> Image.Image:
    """Random RGB test image of size height x width."""
    return Image.fromarray(np.random.RandomState(seed).randint(0, 256, (height, width, 3), dtype=np.uint8))


def make_hf_processor(tok_dir: str, **image_kwargs):
    """transformers' Qwen2_5_VLProcessor from our tokenizer dir and its PIL image processor.

    Its torchvision-only video processor is replaced by a stub that returns our VideoProcessor's output (so
    the text expansion of videos is still transformers' code); the class check for that stub is bypassed
    only while constructing.
    """
    import transformers.processing_utils as pu
    from transformers import AutoTokenizer, Qwen2_5_VLProcessor
    from transformers.image_processing_base import BatchFeature
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.video_processing_utils import VideoProcessorMixin
    from transformers.video_utils import VideoMetadata

    class OurVideoProcessor(VideoProcessorMixin):
        merge_size = 2
        temporal_patch_size = 2

        def __init__(self):
            self.ours = VideoProcessor()

        def __call__(self, videos, **kwargs):
            out = self.ours(videos)
            meta = [VideoMetadata(total_num_frames=len(v)) for v in videos]
            return BatchFeature(
                {
                    "pixel_values_videos": out["pixel_values_videos"],
                    "video_grid_thw": out["video_grid_thw"],
                    "video_metadata": meta,
                }
            )

    saved = pu.ProcessorMixin.__dict__["get_possibly_dynamic_module"]
    original = pu.ProcessorMixin.get_possibly_dynamic_module
    pu.ProcessorMixin.get_possibly_dynamic_module = staticmethod(
        lambda name: VideoProcessorMixin if name == "VideoProcessorMixin" else original(name)
    )
    try:
        return Qwen2_5_VLProcessor(
            image_processor=Qwen2VLImageProcessorPil(**image_kwargs),
            tokenizer=AutoTokenizer.from_pretrained(tok_dir),
            video_processor=OurVideoProcessor(),
            chat_template=QWEN25_VL_CHAT_TEMPLATE,
        )
    finally:
        pu.ProcessorMixin.get_possibly_dynamic_module = saved


def transformers_video_code(method: str = "patchify"):
    """(Qwen2VLVideoProcessor.<method> as a plain function of (self, ...), its class defaults), taken from
    transformers' source by AST (the module imports torchvision, which must not be installed here)."""
    import torch
    import transformers.models.qwen2_vl as pkg

    path = inspect.getfile(pkg).replace("__init__.py", "video_processing_qwen2_vl.py")
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Qwen2VLVideoProcessor")
    fn = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == method)
    fn.returns = None
    for a in (*fn.args.args, *fn.args.kwonlyargs):
        a.annotation = None
    namespace = {"torch": torch, "math": math}
    code = compile(ast.Module(body=[fn], type_ignores=[]), path, "exec")
    exec(code, namespace)  # noqa: S102 -- transformers' own source, parsed above
    names = ("size", "patch_size", "temporal_patch_size", "merge_size", "min_frames", "max_frames", "fps")
    defaults = {
        t.targets[0].id: eval(compile(ast.Expression(t.value), path, "eval"))
        for t in cls.body
        if isinstance(t, ast.Assign) and isinstance(t.targets[0], ast.Name) and t.targets[0].id in names
    }
    return namespace[method], defaults


def write_video(path: str, n: int = 12, rate: int = 6, size=(56, 84), codec: str = "mpeg4", seed: int = 0):
    """A small video file of n random frames (height, width = size) at `rate` fps, written with PyAV."""
    import av

    rng = np.random.RandomState(seed)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        for _ in range(n):
            frame = av.VideoFrame.from_ndarray(
                rng.randint(0, 256, (*size, 3), dtype=np.uint8), format="rgb24"
            )
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return str(path)
