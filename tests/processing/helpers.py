"""Helpers for processing tests: random images, transformers' reference processor."""

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
