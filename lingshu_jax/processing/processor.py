"""Qwen2.5-VL processor: conversations (+ images / videos) -> model inputs, as transformers'
`Qwen2_5_VLProcessor` (`apply_chat_template(tokenize=False)` then `processor(text, images, videos)`).

Each `<|image_pad|>` of the rendered prompt becomes t*h*w/merge**2 copies (image_grid_thw of that image, in
order of appearance across the batch), each `<|video_pad|>` likewise; text is tokenised without added
special tokens; a batch is padded (left by default) with the pad token. Output (numpy):

    input_ids          [B, S] int64
    attention_mask     [B, S] int64     1 = token, 0 = padding
    mm_token_type_ids  [B, S] int64     0 text, 1 image pad, 2 video pad (as transformers)
    pixel_values       [N, 1176] float32, image_grid_thw [n_images, 3] int64         (when images)
    pixel_values_videos [M, 1176] float32, video_grid_thw [n_videos, 3] int64,
    second_per_grid_ts [n_videos] float64                                             (when videos)

`encode_for_training` adds `assistant_mask` [1, S] bool and `labels` [1, S] int64 (-100 outside assistant
turns) for supervised fine-tuning.
"""

from __future__ import annotations

import os
import re

import numpy as np

from lingshu_jax.processing.chat import ChatTemplate, find_chat_template, token_mask_from_spans
from lingshu_jax.processing.dicom import load_image
from lingshu_jax.processing.image import ImageProcessor, VideoProcessor, check_grid
from lingshu_jax.processing.tokenizer import Tokenizer
from lingshu_jax.processing.video import read_video

VIDEO_FILE_MAX_FRAMES = 768  # transformers' Qwen2VLVideoProcessor.max_frames

IMAGE_TOKEN = "<|image_pad|>"
VIDEO_TOKEN = "<|video_pad|>"
_MM_RE = re.compile(re.escape(IMAGE_TOKEN) + "|" + re.escape(VIDEO_TOKEN))
IGNORE_INDEX = -100


def is_conversation(messages) -> bool:
    """True for one conversation (list of message dicts), False for a batch (list of conversations)."""
    return isinstance(messages, (list, tuple)) and (len(messages) == 0 or isinstance(messages[0], dict))


def _is_image_part(part: dict) -> bool:
    # Same test as the Qwen2.5-VL template.
    return part.get("type") == "image" or "image" in part or "image_url" in part


def collect_media(conversations) -> tuple[list, list]:
    """Images and videos attached to content parts, in template order (None where a part has no data)."""
    images, videos = [], []
    for conv in conversations:
        for message in conv:
            if isinstance(message.get("content"), str):
                continue
            for part in message["content"]:
                if _is_image_part(part):
                    value = next(
                        (part[k] for k in ("image", "image_url", "path", "url") if part.get(k) is not None),
                        None,
                    )
                    images.append(value.get("url") if isinstance(value, dict) else value)
                elif part.get("type") == "video" or "video" in part:
                    videos.append(part.get("video", part.get("path")))
    return images, videos


def _load_visual(x):
    """Path / bytes -> PIL RGB via load_image; PIL images and arrays pass through."""
    if isinstance(x, (str, os.PathLike, bytes, bytearray)):
        return load_image(x)
    return x


def _load_video(v, fps):
    """A video -> (frames, their rate per second or None: `fps` as given). A file is decoded with PyAV and
    sampled at `fps` (transformers' Qwen2-VL default 2 when None), at most 768 frames (its default); so is
    a video file's bytes."""
    if isinstance(v, (str, os.PathLike, bytes, bytearray)):
        source = v if isinstance(v, (bytes, bytearray)) else os.fspath(v)
        return read_video(source, 2.0 if fps is None else float(fps), VIDEO_FILE_MAX_FRAMES)
    if isinstance(v, np.ndarray):
        return v, fps
    return [_load_visual(f) for f in v], fps


def check_placeholders(texts: list[str], image_tokens: list[int], video_tokens: list[int]) -> None:
    """ValueError unless the texts hold one image/video pad per given image/video."""
    n_img = sum(t.count(IMAGE_TOKEN) for t in texts)
    n_vid = sum(t.count(VIDEO_TOKEN) for t in texts)
    if n_img != len(image_tokens):
        raise ValueError(
            f"found {n_img} {IMAGE_TOKEN} placeholders in the text but {len(image_tokens)} images "
            "were given; every image part of the conversation needs exactly one image"
        )
    if n_vid != len(video_tokens):
        raise ValueError(
            f"found {n_vid} {VIDEO_TOKEN} placeholders in the text but {len(video_tokens)} videos "
            "were given; every video part of the conversation needs exactly one video"
        )


def expand_placeholders(texts: list[str], image_tokens: list[int], video_tokens: list[int]):
    """Replaces the i-th image/video pad (across the batch) with its number of pad tokens.

    -> (expanded texts, per text [(orig_start, orig_end, delta)] for offset mapping). ValueError on a count
    mismatch between placeholders and given images/videos.
    """
    check_placeholders(texts, image_tokens, video_tokens)
    counts = {IMAGE_TOKEN: iter(image_tokens), VIDEO_TOKEN: iter(video_tokens)}
    out, edits = [], []
    for text in texts:
        pieces, last, text_edits = [], 0, []
        for m in _MM_RE.finditer(text):
            n = next(counts[m.group()])
            pieces += [text[last : m.start()], m.group() * n]
            text_edits.append((m.start(), m.end(), len(m.group()) * (n - 1)))
            last = m.end()
        pieces.append(text[last:])
        out.append("".join(pieces))
        edits.append(text_edits)
    return out, edits


def split_counts(texts: list[str], image_tokens: list[int], video_tokens: list[int]) -> list[tuple]:
    """Per text, (its images' token counts, its videos' token counts): the batch's counts in text order."""
    out, i, v = [], 0, 0
    for text in texts:
        n_img, n_vid = text.count(IMAGE_TOKEN), text.count(VIDEO_TOKEN)
        out.append((image_tokens[i : i + n_img], video_tokens[v : v + n_vid]))
        i, v = i + n_img, v + n_vid
    return out


def pad_repeats(ids: np.ndarray, pad_counts: dict[int, list[int]]) -> np.ndarray | None:
    """[L] int64: how many times each token of a text tokenised with ONE pad per image/video appears in the
    expanded text (the i-th pad of id p: pad_counts[p][i] times; other tokens once).

    The tokenizer splits text on special tokens before anything else, so tokenising the expanded text gives
    the same tokens with each pad repeated: `np.repeat(ids, repeats)` is the expanded encoding at a
    fraction of the cost. None when the pads found differ from the counts (a tokenizer without the pads as
    special tokens): the caller then tokenises the expanded text.
    """
    repeats = np.ones(len(ids), np.int64)
    for token_id, counts in pad_counts.items():
        where = np.flatnonzero(ids == token_id)
        if len(where) != len(counts):
            return None
        repeats[where] = counts
    return repeats


def map_offset(pos: int, edits) -> int:
    """Character position in the unexpanded text -> position in the expanded text."""
    return pos + sum(delta for _, end, delta in edits if end <= pos)


def pad_batch(rows: list[list[int]], pad_id: int, side: str = "left") -> tuple[np.ndarray, np.ndarray]:
    """Token id lists -> (ids [B, S] int64, attention_mask [B, S] int64), padded on `side`."""
    if side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {side!r}")
    length = max((len(r) for r in rows), default=0)
    ids = np.full((len(rows), length), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), length), dtype=np.int64)
    for i, row in enumerate(rows):
        sl = slice(length - len(row), length) if side == "left" else slice(0, len(row))
        ids[i, sl] = row
        mask[i, sl] = 1
    return ids, mask


class Processor:
    """Tokenizer + chat template + image/video processors of one checkpoint directory."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        image_processor: ImageProcessor | None = None,
        video_processor: VideoProcessor | None = None,
        chat_template: str | None = None,
        padding_side: str = "left",
    ):
        self.tokenizer = tokenizer
        self.image_processor = image_processor or ImageProcessor()
        self.video_processor = video_processor or VideoProcessor()
        self.chat = ChatTemplate(chat_template or tokenizer.chat_template)
        self.padding_side = padding_side
        self.image_token_id = tokenizer.token_id(IMAGE_TOKEN)
        self.video_token_id = tokenizer.token_id(VIDEO_TOKEN)

    @classmethod
    def from_pretrained(cls, model_dir: str, padding_side: str = "left") -> Processor:
        """tokenizer.json, preprocessor configs and the chat template of a checkpoint directory."""
        return cls(
            Tokenizer.from_pretrained(model_dir),
            ImageProcessor.from_pretrained(model_dir),
            VideoProcessor.from_pretrained(model_dir),
            find_chat_template(model_dir),
            padding_side,
        )

    def apply_chat_template(self, messages, add_generation_prompt: bool = False, **kwargs):
        """One conversation -> str; a batch -> list[str]."""
        if is_conversation(messages):
            return self.chat.render(messages, add_generation_prompt, **kwargs)
        return [self.chat.render(c, add_generation_prompt, **kwargs) for c in messages]

    def _vision(self, images, image_inputs, videos, video_inputs, video_fps) -> dict:
        """Processes (or validates precomputed) images and videos -> output entries."""
        out = {}
        if image_inputs is not None:
            out["pixel_values"] = np.asarray(image_inputs["pixel_values"], dtype=np.float32)
            out["image_grid_thw"] = np.asarray(image_inputs["image_grid_thw"], dtype=np.int64)
        elif images:
            out.update(self.image_processor([_load_visual(im) for im in images]))
        if video_inputs is not None:
            out["pixel_values_videos"] = np.asarray(video_inputs["pixel_values_videos"], dtype=np.float32)
            out["video_grid_thw"] = np.asarray(video_inputs["video_grid_thw"], dtype=np.int64)
            if "second_per_grid_ts" in video_inputs:
                out["second_per_grid_ts"] = np.asarray(video_inputs["second_per_grid_ts"], dtype=np.float64)
        elif videos:
            given = [video_fps] * len(videos) if np.ndim(video_fps) == 0 else list(video_fps)
            loaded = [_load_video(v, f) for v, f in zip(videos, given)]
            fps = [self.video_processor.default_fps if f is None else f for _, f in loaded]
            out.update(self.video_processor([frames for frames, _ in loaded], fps=fps))
        ip, vp = self.image_processor, self.video_processor
        if "pixel_values" in out:
            check_grid(
                out["pixel_values"],
                out["image_grid_thw"],
                3 * ip.temporal_patch_size * ip.patch_size**2,
                ip.merge_size,
                "image",
            )
        if "pixel_values_videos" in out:
            check_grid(
                out["pixel_values_videos"],
                out["video_grid_thw"],
                3 * vp.temporal_patch_size * vp.patch_size**2,
                vp.merge_size,
                "video",
            )
        return out

    def _token_counts(self, vision: dict) -> tuple[list[int], list[int]]:
        img = vision.get("image_grid_thw", np.zeros((0, 3), np.int64))
        vid = vision.get("video_grid_thw", np.zeros((0, 3), np.int64))
        return (
            [int(n) for n in img.prod(axis=1) // self.image_processor.merge_size**2],
            [int(n) for n in vid.prod(axis=1) // self.video_processor.merge_size**2],
        )

    def _encode_batch_expanded(self, texts: list[str], image_tokens: list[int], video_tokens: list[int]):
        """Token id rows of the texts with every pad expanded to its count (see `pad_repeats`)."""
        check_placeholders(texts, image_tokens, video_tokens)
        rows = self.tokenizer.encode_batch(texts)
        out = []
        for row, (img, vid) in zip(rows, split_counts(texts, image_tokens, video_tokens)):
            row = np.asarray(row, np.int64)
            repeats = pad_repeats(row, {self.image_token_id: img, self.video_token_id: vid})
            if repeats is None:
                expanded, _ = expand_placeholders(texts, image_tokens, video_tokens)
                return self.tokenizer.encode_batch(expanded)
            out.append(np.repeat(row, repeats))
        return out

    def _encode_expanded_with_mask(
        self, text: str, spans: list, image_tokens: list[int], video_tokens: list[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """One text -> (ids [L] int64, bool [L]: token starts inside a character span of `text`), pads
        expanded. Tokenises the text with one pad per image/video and repeats the pads (`pad_repeats`)."""
        check_placeholders([text], image_tokens, video_tokens)
        ids, offsets = self.tokenizer.encode_with_offsets(text)
        ids = np.asarray(ids, np.int64)
        repeats = pad_repeats(ids, {self.image_token_id: image_tokens, self.video_token_id: video_tokens})
        if repeats is None:
            return self._encode_expanded_with_mask_slow(text, spans, image_tokens, video_tokens)
        mask = token_mask_from_spans(offsets, spans)
        return np.repeat(ids, repeats), np.repeat(mask, repeats)

    def _encode_expanded_with_mask_slow(
        self, text: str, spans: list, image_tokens: list[int], video_tokens: list[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """As `_encode_expanded_with_mask`, by tokenising the expanded text (the reference)."""
        (expanded,), (edits,) = expand_placeholders([text], image_tokens, video_tokens)
        ids, offsets = self.tokenizer.encode_with_offsets(expanded)
        spans = [(map_offset(s, edits), map_offset(e, edits)) for s, e in spans]
        return np.asarray(ids, np.int64), token_mask_from_spans(offsets, spans)

    def _mm_type_ids(self, ids: np.ndarray) -> np.ndarray:
        return np.where(ids == self.image_token_id, 1, np.where(ids == self.video_token_id, 2, 0)).astype(
            np.int64
        )

    def encode_text(
        self,
        text,
        images=None,
        videos=None,
        *,
        padding_side: str | None = None,
        image_inputs: dict | None = None,
        video_inputs: dict | None = None,
        video_fps=None,
    ) -> dict:
        """Rendered prompt(s) + images/videos -> model inputs (transformers' `processor(text=...)`)."""
        texts = [text] if isinstance(text, str) else list(text)
        images = [images] if images is not None and not isinstance(images, (list, tuple)) else images
        vision = self._vision(images, image_inputs, videos, video_inputs, video_fps)
        ids, mask = pad_batch(
            self._encode_batch_expanded(texts, *self._token_counts(vision)),
            self.tokenizer.pad_token_id,
            padding_side or self.padding_side,
        )
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "mm_token_type_ids": self._mm_type_ids(ids),
            **vision,
        }

    def __call__(
        self,
        messages,
        images=None,
        videos=None,
        add_generation_prompt: bool = True,
        *,
        padding_side: str | None = None,
        image_inputs: dict | None = None,
        video_inputs: dict | None = None,
        video_fps=None,
        **template_kwargs,
    ) -> dict:
        """Conversation (or batch of conversations) -> model inputs.

        images / videos: flat lists over the batch in order of appearance; when None they are taken from
        the content parts ({"type": "image", "image": PIL | path | array}, {"type": "video", "video": frames
        | video file}). video_fps: the rate of given frames (default 24, as transformers without metadata), or
        the rate a video file is sampled at (default 2; processing/video.py), per video or for all.
        image_inputs / video_inputs: precomputed processor outputs (validated against the grids).
        """
        convs = [messages] if is_conversation(messages) else list(messages)
        texts = [self.chat.render(c, add_generation_prompt, **template_kwargs) for c in convs]
        found_images, found_videos = collect_media(convs)
        if images is None and image_inputs is None and any(x is not None for x in found_images):
            images = found_images
        if videos is None and video_inputs is None and any(x is not None for x in found_videos):
            videos = found_videos
        if images is not None and any(x is None for x in images):
            raise ValueError("an image content part has no image data (give `images=` or an 'image' key)")
        if videos is not None and any(x is None for x in videos):
            raise ValueError("a video content part has no frames (give `videos=` or a 'video' key)")
        return self.encode_text(
            texts,
            images,
            videos,
            padding_side=padding_side,
            image_inputs=image_inputs,
            video_inputs=video_inputs,
            video_fps=video_fps,
        )

    def encode_for_training(
        self,
        messages,
        images=None,
        videos=None,
        *,
        image_inputs: dict | None = None,
        video_inputs: dict | None = None,
        video_fps=None,
        **template_kwargs,
    ) -> dict:
        """One full conversation -> model inputs [1, S] + assistant_mask [1, S] bool + labels [1, S] int64.

        assistant_mask is True on the tokens of each assistant turn's content and its closing <|im_end|>.
        """
        if not is_conversation(messages):
            raise ValueError("encode_for_training takes one conversation (a list of message dicts)")
        text, spans = self.chat.render_with_assistant_spans(messages, **template_kwargs)
        found_images, found_videos = collect_media([messages])
        if images is None and image_inputs is None and any(x is not None for x in found_images):
            images = found_images
        if videos is None and video_inputs is None and any(x is not None for x in found_videos):
            videos = found_videos
        vision = self._vision(images, image_inputs, videos, video_inputs, video_fps)
        ids, mask = self._encode_expanded_with_mask(text, spans, *self._token_counts(vision))
        ids, mask = ids[None], mask[None]
        return {
            "input_ids": ids,
            "attention_mask": np.ones_like(ids),
            "mm_token_type_ids": self._mm_type_ids(ids),
            "assistant_mask": mask,
            "labels": np.where(mask, ids, IGNORE_INDEX),
            **vision,
        }

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens)

    def batch_decode(self, batch, skip_special_tokens: bool = True) -> list[str]:
        return self.tokenizer.batch_decode(batch, skip_special_tokens)
