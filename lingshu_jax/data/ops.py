"""The few processing functions the data pipeline calls, injected as plain callables.

The pipeline owns no image processor, tokenizer, chat renderer or rope index: it calls the package's
(`lingshu_jax.processing`, `lingshu_jax.model.rope`) through this small dataclass, so tests can swap a
fake in and the real ones stay the single implementation. Everything must pickle (grain workers).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from lingshu_jax.processing.image import PixelNormalization


@dataclasses.dataclass(frozen=True)
class Ops:
    """Injected processing functions and the token ids the pipeline needs.

    load_image(path_or_bytes) -> image (PIL or uint8 array); raises on missing/corrupt/oversized files.
    process_images(list of images) -> {"pixel_values": [N, 1176], "image_grid_thw": [n, 3] int}: float32
      rows, or uint8 rows when `pixel_normalization` (their map to the float rows) is set.
    encode(messages, image_inputs, video_inputs=None) -> {"input_ids": [1, L] int, "assistant_mask": [1, L]
      bool}: the rendered, tokenised conversation with each image's (video's) pad tokens expanded per
      `image_inputs` (`video_inputs`).
    rope_index(input_ids [1, L], image_grid_thw [n, 3] | None, video_grid_thw [m, 3] | None = None,
      second_per_grid_ts [m] | None = None) -> position_ids [3, 1, L] int32.
    process_videos(list of frame lists, fps=[m]) -> {"pixel_values_videos": [M, 1176], "video_grid_thw"
      [m, 3], "second_per_grid_ts" [m]} (rows of the same dtype as the images'); None: no video support.
    load_video(path, fps, max_frames) -> (frames [H, W, 3] uint8, their rate per second): a video file's
      frames sampled from its own rate (processing/video.py, PyAV); None: video files are not read.
    """

    load_image: Callable[[Any], Any]
    process_images: Callable[[list], dict]
    encode: Callable[[list, dict | None], dict]
    rope_index: Callable[[np.ndarray, np.ndarray | None], np.ndarray]
    image_token_id: int
    video_token_id: int
    vision_start_id: int
    vision_end_id: int
    pad_id: int
    merge_size: int = 2
    window_merge_units: int = 4
    pixel_normalization: PixelNormalization | None = None  # set when process_images returns uint8 rows
    process_videos: Callable[..., dict] | None = None
    load_video: Callable[[str, float, int], tuple[list, float]] | None = None

    @property
    def pixel_dtype(self) -> str:
        return "float32" if self.pixel_normalization is None else "uint8"

    @classmethod
    def from_processor(cls, processor, model_config, tokenizer=None, pixel_dtype: str = "uint8") -> "Ops":
        """Ops over a `lingshu_jax.processing.Processor` and a `ModelConfig` (the production path).

        pixel_dtype="uint8": images come back as uint8 patch rows, normalised by the model with the
        processor's `normalization`; "float32": the processor's normalised float rows.
        """
        from lingshu_jax.processing.dicom import load_image
        from lingshu_jax.processing.video import read_video

        if pixel_dtype not in ("float32", "uint8"):
            raise ValueError(f"pixel_dtype={pixel_dtype!r}: expected 'float32' or 'uint8'")
        uint8 = pixel_dtype == "uint8"
        images = dataclasses.replace(processor.image_processor, output="uint8" if uint8 else "float")
        normalization = images.normalization if uint8 else None
        videos = getattr(processor, "video_processor", None)
        if videos is not None:
            videos = dataclasses.replace(videos, output=images.output)
            if uint8 and videos.normalization != normalization:
                raise ValueError(
                    "pixel_dtype='uint8' needs the image and video processors to normalise alike "
                    f"({normalization} vs {videos.normalization}); use pixel_dtype='float32'"
                )

        tok = tokenizer or processor.tokenizer
        v = model_config.vision
        if processor.image_processor.merge_size != v.spatial_merge_size:
            raise ValueError(
                f"image processor merge_size {processor.image_processor.merge_size} != model "
                f"spatial_merge_size {v.spatial_merge_size}"
            )
        if tok.token_id("image_pad") != model_config.image_token_id:
            raise ValueError(
                f"tokenizer <|image_pad|> id {tok.token_id('image_pad')} != model image_token_id "
                f"{model_config.image_token_id} (tokenizer and model config disagree)"
            )
        return cls(
            load_image=load_image,
            process_images=images,
            process_videos=videos,
            load_video=None
            if videos is None
            else functools.partial(read_video, temporal_patch_size=videos.temporal_patch_size),
            pixel_normalization=normalization,
            encode=functools.partial(_encode_with_processor, processor),
            rope_index=functools.partial(
                _rope_index,
                image_token_id=model_config.image_token_id,
                video_token_id=model_config.video_token_id,
                spatial_merge_size=v.spatial_merge_size,
                tokens_per_second=v.tokens_per_second,
            ),
            image_token_id=model_config.image_token_id,
            video_token_id=model_config.video_token_id,
            vision_start_id=model_config.vision_start_token_id,
            vision_end_id=model_config.vision_end_token_id,
            pad_id=tok.pad_token_id,
            merge_size=v.spatial_merge_size,
            window_merge_units=v.window_merge_units,
        )


def _encode_with_processor(
    processor, messages: list, image_inputs: dict | None, video_inputs: dict | None = None
) -> dict:
    """The processor's encode_for_training. Only the grids decide the tokens, so it gets a zero-stride
    float32 stand-in of the pixel rows' shape (nothing to copy when it converts them to float32)."""
    if image_inputs is not None:
        image_inputs = {**image_inputs, "pixel_values": _stand_in(image_inputs["pixel_values"])}
    if video_inputs is not None:
        video_inputs = {**video_inputs, "pixel_values_videos": _stand_in(video_inputs["pixel_values_videos"])}
    return processor.encode_for_training(messages, image_inputs=image_inputs, video_inputs=video_inputs)


def _stand_in(rows) -> np.ndarray:
    return np.broadcast_to(np.zeros((), np.float32), np.shape(rows))


def _rope_index(input_ids, image_grid_thw, video_grid_thw=None, second_per_grid_ts=None, **kw) -> np.ndarray:
    from lingshu_jax.model.rope import get_rope_index

    position_ids, _ = get_rope_index(
        input_ids,
        image_grid_thw=image_grid_thw,
        video_grid_thw=video_grid_thw,
        second_per_grid_ts=second_per_grid_ts,
        **kw,
    )
    return position_ids
