"""Rollouts: sample G responses per prompt with the JAX generator, score them, and lay them out for the
log-prob forward passes.

    encoded = [encode_prompt(processor, p, max_prompt_tokens) for p in prompts]        # host, once per step
    tokens, lengths = sample_responses(config, params, encoded, G, ...)                # infer.generate
    ro = Rollout(prompts, encoded, G, tokens, lengths)
    ro.score(processor, reward_fn)                                                     # rewards, advantages
    ro.model_batch(config, rows, pad_id)                                               # -> model inputs

Rows are prompt-major: row r holds sample r % G of prompt r // G (what `group_advantages` expects).

Layout of one training row (static shapes, `prompt_len` and `resp_len` fixed per rollout)::

    [pad ... pad | prompt tokens (incl. image pads) | response tokens (incl. the stop token) | pad ... pad]
     <-------------- prompt_len (left padded) -----> <-------------- resp_len (right padded) --------->

The logits at positions [prompt_len - 1, prompt_len - 1 + resp_len) predict the response tokens, so the
log-probs come out as [B, resp_len], aligned with the sampled tokens. Vision inputs are the prompt's own
processor outputs (the same pixel rows and grids the generator was given), and position ids come from
`prepare_inputs` over the whole row: transformers' M-RoPE rule continues the text after the prompt at
max(prompt positions) + 1, which is exactly the position the generator's decode loop used.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import numpy as np

from lingshu_jax.infer import batching
from lingshu_jax.infer.generate import DEFAULT_BUCKETS, Buckets, generate_ids, place_params
from lingshu_jax.infer.sampling import SamplingConfig
from lingshu_jax.model.config import ModelConfig
from lingshu_jax.model.vlm import check_attention_span, prepare_inputs
from lingshu_jax.rl.data import Prompt
from lingshu_jax.rl.loss import group_advantages, token_log_probs


# -------------------------------------------------------------------------------------- prompts
def encode_prompt(processor, prompt: Prompt, max_prompt_tokens: int = 0) -> dict[str, np.ndarray]:
    """One prompt -> processor outputs with the generation prompt (`input_ids` [1, S], vision arrays).

    Raises ValueError naming the record when the prompt (image tokens included) exceeds `max_prompt_tokens`
    (0 = no limit); `filter_overlong` drops such prompts up front.
    """
    enc = processor([list(prompt.messages)], add_generation_prompt=True)
    n = int(np.asarray(enc["attention_mask"]).sum())
    if max_prompt_tokens and n > max_prompt_tokens:
        raise ValueError(
            f"{prompt.where}: prompt has {n} tokens (images included) > config.rl.max_prompt_tokens="
            f"{max_prompt_tokens}; set config.data.filter_overlong=True to drop such prompts"
        )
    return enc


def rl_processor(assets_dir: str, max_pixels: int | None = None):
    """The checkpoint's processor; `max_pixels` (config.data.max_pixels) caps its images' resolution, so a
    prompt's image fits `max_prompt_tokens` and the vision attention span."""
    from lingshu_jax.processing import Processor

    processor = Processor.from_pretrained(assets_dir)
    if max_pixels:
        processor.image_processor = dataclasses.replace(processor.image_processor, max_pixels=int(max_pixels))
    return processor


def check_vision_spans(config: ModelConfig, prompts: Sequence[Prompt], encoded: Sequence[dict]) -> None:
    """ValueError naming the prompt's record ("file:line") when one of its images takes more vision-stream
    rows than the model's full-attention vision layers reach (`vlm.check_attention_span`)."""
    for prompt, enc in zip(prompts, encoded):
        grids = [np.asarray(enc[k]).reshape(-1, 3) for k in ("image_grid_thw", "video_grid_thw") if k in enc]
        if grids:
            try:
                check_attention_span(config, np.concatenate(grids))
            except ValueError as e:
                raise ValueError(f"{prompt.where}: {e}") from None


def filter_overlong(processor, prompts: Sequence[Prompt], max_prompt_tokens: int) -> list[Prompt]:
    """Prompts whose encoding fits `max_prompt_tokens` (EasyR1's filter_overlong_prompts; opens every
    image once)."""
    keep = []
    for p in prompts:
        try:
            encode_prompt(processor, p, max_prompt_tokens)
        except ValueError:
            continue
        keep.append(p)
    return keep


def _prompt_ids(enc: dict) -> np.ndarray:
    ids, mask = np.asarray(enc["input_ids"])[0], np.asarray(enc["attention_mask"])[0].astype(bool)
    return ids[mask]


# -------------------------------------------------------------------------------------- sampling
def sample_responses(
    config: ModelConfig,
    params,
    encoded: Sequence[dict],
    group_size: int,
    max_new_tokens: int,
    sampling: SamplingConfig,
    rng,
    stop_token_ids: Sequence[int],
    pad_token_id: int,
    *,
    rows_per_call: int = 256,
    mesh=None,
    rules=None,
    buckets: Buckets = DEFAULT_BUCKETS,
    behaviour_logp: bool = False,
    prompt_ids: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """G samples of every prompt, with `infer.generate` (whole prompts per call, <= rows_per_call rows).

    Sample j of prompt i is drawn with its own key, fold_in(fold_in(rng, prompt_ids[i]), j) (prompt_ids:
    default 0, 1, ...), so it is the same token sequence whichever call, batch or host draws it: a
    multi-host rollout (each process passing its own prompts, their indices in the global rollout as
    `prompt_ids`, and equally many of them) samples exactly what one host would.

    Returns:
      tokens [P*G, T] int32 (the stop token included, `pad_token_id` after it), lengths [P*G] int32, and
      with `behaviour_logp` the log-probs [P*G, T] float32 of the sampled tokens under the logits the decode
      loop sampled them from (a debugging aid: generation then returns [rows, T, V] logits), else None.
    """
    per_call = max(1, rows_per_call // group_size)
    prompt_ids = np.arange(len(encoded)) if prompt_ids is None else np.asarray(prompt_ids)
    if len(prompt_ids) != len(encoded):
        raise ValueError(f"sample_responses: {len(prompt_ids)} prompt ids for {len(encoded)} prompts")
    row_keys = _row_keys(rng, prompt_ids, group_size)  # [P*G]
    if mesh is not None:  # the generation layout once, not once per call
        params = place_params(config, params, mesh, rules)
    tokens, lengths, logps = [], [], []
    for start in range(0, len(encoded), per_call):
        rows = [enc for enc in encoded[start : start + per_call] for _ in range(group_size)]
        out = generate_ids(
            config,
            params,
            batching.collate(rows, pad_token_id),
            max_new_tokens,
            sampling,
            row_keys[start * group_size : (start + len(rows) // group_size) * group_size],
            tuple(stop_token_ids),
            pad_token_id,
            mesh=mesh,
            rules=rules,
            buckets=buckets,
            return_logits=behaviour_logp,
        )
        tokens.append(out["tokens"])
        lengths.append(out["lengths"])
        if behaviour_logp:
            scaled = out["logits"] / (sampling.temperature or 1.0)
            logps.append(np.asarray(token_log_probs(scaled, out["tokens"])))
    width = max(t.shape[1] for t in tokens)
    tokens = _concat_padded(tokens, width, pad_token_id).astype(np.int32)
    logp = _concat_padded(logps, width, 0.0).astype(np.float32) if behaviour_logp else None
    return tokens, np.concatenate(lengths).astype(np.int32), logp


def _row_keys(rng, prompt_ids: np.ndarray, group_size: int):
    """[P*G] keys, prompt-major: fold_in(fold_in(rng, prompt id), sample index)."""
    per_prompt = jax.vmap(lambda i: jax.random.fold_in(rng, i))(np.asarray(prompt_ids, np.uint32))
    samples = np.arange(group_size, dtype=np.uint32)
    keys = jax.vmap(lambda k: jax.vmap(lambda j: jax.random.fold_in(k, j))(samples))(per_prompt)
    return keys.reshape(-1)


def _concat_padded(arrays: Sequence[np.ndarray], width: int, value) -> np.ndarray:
    """[rows_i, T_i] arrays -> [sum rows_i, width], each right-padded with `value`."""
    return np.concatenate(
        [np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=value) for a in arrays]
    )


# -------------------------------------------------------------------------------------- the rollout
@dataclasses.dataclass
class Rollout:
    """One rollout batch: P prompts x G samples (prompt-major rows), and what the update needs.

    tokens [R, T_gen], lengths [R] (R = P*G); after `score`: texts, rewards [R], per_reward {name: [R]},
    advantages [R]; after the log-prob passes (set by the trainer): old_logp, ref_logp [R, resp_len].
    `logprob_gap()`: the largest |old_logp - behaviour_logp| over response tokens, when both are known.
    """

    prompts: list[Prompt]
    encoded: list[dict]
    group_size: int
    tokens: np.ndarray
    lengths: np.ndarray
    prompt_bucket: int = 64
    response_bucket: int = 64
    patch_bucket: int = 256
    max_new_tokens: int = 0
    texts: list[str] = dataclasses.field(default_factory=list)
    rewards: np.ndarray | None = None
    per_reward: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    advantages: np.ndarray | None = None
    old_logp: np.ndarray | None = None
    ref_logp: np.ndarray | None = None
    behaviour_logp: np.ndarray | None = None  # [R, T_gen], from the generator's own logits (debugging)

    def __post_init__(self):
        r = len(self.prompts) * self.group_size
        if self.tokens.shape[0] != r or self.lengths.shape != (r,):
            raise ValueError(
                f"Rollout: {len(self.prompts)} prompts x {self.group_size} samples need {r} rows; got "
                f"tokens {self.tokens.shape}, lengths {self.lengths.shape}"
            )
        self.prompt_of_row = np.repeat(np.arange(len(self.prompts)), self.group_size)
        longest = max(len(_prompt_ids(e)) for e in self.encoded)
        self.prompt_len = batching.bucket_size(longest, self.prompt_bucket)
        longest = int(self.lengths.max(initial=1))
        self.resp_len = batching.bucket_size(longest, self.response_bucket)
        if self.max_new_tokens:
            self.resp_len = max(min(self.resp_len, self.max_new_tokens), longest)

    @property
    def num_rows(self) -> int:
        return len(self.prompt_of_row)

    def response_mask(self, rows=None) -> np.ndarray:
        """[R, resp_len] bool: 1 on the sampled tokens (stop token included)."""
        lengths = self.lengths if rows is None else self.lengths[rows]
        return np.arange(self.resp_len)[None, :] < lengths[:, None]

    def logprob_gap(self) -> float:
        """Max |log-prob of the update's forward - log-prob the decode loop sampled with| over the response
        tokens: ~1e-6 in float32 when the forward sees the prompt, images and positions generation saw."""
        t = min(self.behaviour_logp.shape[1], self.resp_len)
        mask = self.response_mask()[:, :t]
        return float(np.abs(self.old_logp[:, :t] - self.behaviour_logp[:, :t])[mask].max(initial=0.0))

    def score(self, processor, reward_fn: Callable, scale_by_std: bool = True) -> None:
        """Decodes the responses, applies `reward_fn` (`rewards.combine_rewards`) and normalises per group."""
        self.texts = [
            processor.decode(t[:n], skip_special_tokens=True) for t, n in zip(self.tokens, self.lengths)
        ]
        refs = [self.prompts[p].reference for p in self.prompt_of_row]
        total, self.per_reward = reward_fn(self.texts, refs)
        self.rewards = np.asarray(total, np.float32)
        self.advantages = np.asarray(
            group_advantages(self.rewards, self.group_size, scale_by_std=scale_by_std)
        )

    def patch_budget(self, rows_per_batch: int, vision_chunks: int = 1) -> int:
        """A vision patch budget that fits any `rows_per_batch` rows of this rollout (the sum over the rows
        with the most patches, bucketed), so every micro-batch shares one shape; 0 = no images. With
        `vision_chunks`, that many chunks, each fitting any rows_per_batch / vision_chunks rows."""
        per_row = np.sort([batching.num_patches(self.encoded[p]) for p in self.prompt_of_row])[::-1]
        most = int(per_row[: rows_per_batch // vision_chunks].sum())
        return batching.bucket_size(most, self.patch_bucket) * vision_chunks if most else 0

    def model_batch(
        self,
        config: ModelConfig,
        rows: Sequence[int],
        pad_id: int,
        patch_budget: int = 0,
        vision_chunks: int = 1,
    ) -> dict:
        """Model inputs (DESIGN.md) for `rows` (-1 = an all-padding row) plus the GRPO arrays:
        response_tokens / response_mask [b, resp_len], and old_logp / ref_logp [b, resp_len], advantages [b]
        when known. numpy, host side. `vision_chunks`: the stream laid out per group of rows
        (`prepare_inputs`), as attention_impl="splash" needs."""
        rows = np.asarray(rows, np.int64)
        b, p_len, t_len = len(rows), self.prompt_len, self.resp_len
        ids = np.full((b, p_len + t_len), pad_id, np.int32)
        mask = np.zeros((b, p_len + t_len), np.int32)
        vision: dict[str, list] = {k: [] for k in batching.VISION_KEYS}
        for i, r in enumerate(rows):
            if r < 0:
                continue
            enc = self.encoded[self.prompt_of_row[r]]
            prompt = _prompt_ids(enc)
            ids[i, p_len - len(prompt) : p_len] = prompt
            n = int(self.lengths[r])
            ids[i, p_len : p_len + n] = self.tokens[r, :n]  # n <= resp_len
            mask[i, p_len - len(prompt) : p_len + n] = 1
            for k in batching.VISION_KEYS:  # in row order, as `batching.collate` gave them to generation
                if k in enc:
                    vision[k].append(np.asarray(enc[k]))
        cat = {k: (np.concatenate(v) if v else None) for k, v in vision.items()}
        if patch_budget and cat["pixel_values"] is None and cat["pixel_values_videos"] is None:
            # no image in these rows: an all-padding stream, so every batch of the rollout (and every
            # host's share of one) has the same arrays
            cat.update(batching.empty_vision(config.vision.patch_dim))
        # A sampled <|image_pad|> / <|video_pad|> is plain text to the decode loop (embedded, position +1):
        # hide it from the vision bookkeeping, keep it as the input token.
        as_text = np.zeros_like(ids, bool)
        as_text[:, p_len:] = np.isin(ids[:, p_len:], [config.image_token_id, config.video_token_id])
        batch = prepare_inputs(
            config,
            np.where(as_text, pad_id, ids),
            mask,
            *(cat[k] for k in batching.VISION_KEYS),
            patch_budget=patch_budget or None,
            vision_chunks=vision_chunks if patch_budget else 1,
        )
        batch["input_ids"] = ids
        live = rows >= 0
        safe = np.where(live, rows, 0)
        resp_mask = self.response_mask(safe) & live[:, None]
        batch["response_tokens"] = np.where(resp_mask, ids[:, p_len:], pad_id).astype(np.int32)
        batch["response_mask"] = resp_mask.astype(np.int32)
        for name in ("old_logp", "ref_logp"):
            value = getattr(self, name)
            if value is not None:
                batch[name] = np.where(resp_mask, value[safe], 0.0).astype(np.float32)
        if self.advantages is not None:
            batch["advantages"] = np.where(live, self.advantages[safe], 0.0).astype(np.float32)
        return batch
