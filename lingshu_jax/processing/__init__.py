"""Qwen2.5-VL / Lingshu input processing: images, videos, DICOM, tokenizer, chat template, Processor."""

from lingshu_jax.processing.chat import ChatTemplate, find_chat_template
from lingshu_jax.processing.dicom import load_dicom, load_image
from lingshu_jax.processing.image import ImageProcessor, VideoProcessor, smart_resize
from lingshu_jax.processing.processor import Processor
from lingshu_jax.processing.tokenizer import Tokenizer

__all__ = [
    "ChatTemplate",
    "ImageProcessor",
    "Processor",
    "Tokenizer",
    "VideoProcessor",
    "find_chat_template",
    "load_dicom",
    "load_image",
    "smart_resize",
]
