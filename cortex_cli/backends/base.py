"""What cortex needs from a vector-quantised generative model (VQGM), whatever library made it.

A backend (`cortex_cli/backends/<name>.py`, registered under the entry-point group `cortex.backends`)
is the only module that imports its generator library. Everything else sees the `VQGM` protocol:
a codebook C (K x d), a square token grid m x m, tokens -> embedding E (B x d x m x m), decoding,
encoding, and seeded conditional sampling with a KV cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from PIL import Image

from ..core.errors import CortexError
from ..core.philox import gumbel as gumbel_noise, keys_tensor
from ..core.seeding import derive_seed, generator_for

StepCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class SamplerSettings:
    """How the prior samples tokens."""

    top_k: int | None = 100  # keep the k most likely tokens (None: all)
    top_p: float = 1.0  # nucleus mass (1.0: off)
    temperature: float = 1.0
    greedy: bool = False  # argmax instead of sampling
    guidance: float | None = None  # classifier-free guidance scale (text-conditional priors); None: no guidance
    # 'philox': the GPU-native sampler, noise keyed by image identity and step, drawn on the device (`philox`);
    # 'host': the older sampler, each image's torch.Generator drawn on the host every step (older stores' images)
    noise: str = "philox"
    precision: str = "fp32"  # the prior's weights and activations while sampling: 'fp32' or 'bf16' (philox only)

    def label(self) -> str:
        """The sampler's part of an image's identity: the older host sampler's label as it always was,
        the philox sampler's with `,noise=philox` (and its precision when not fp32), so the two never share rows."""
        if self.greedy:
            base = "greedy"
        else:
            base = f"top_k={self.top_k},top_p={self.top_p:g},temperature={self.temperature:g}"
        if self.guidance is not None:
            base = f"{base},guidance={self.guidance:g}"
        if self.noise == "host":
            return base
        return f"{base},noise={self.noise}" + ("" if self.precision == "fp32" else f",precision={self.precision}")


class Concept(Protocol):
    """What one sample is conditioned on: a class id, and its name (text-conditional priors prompt with it)."""

    @property
    def class_id(self) -> int: ...

    @property
    def name(self) -> str: ...


@runtime_checkable
class VQGM(Protocol):
    """A loaded vector-quantised generative model, as cortex uses it."""

    backend: str  # the name it is registered under ('taming', 'janus', ...)
    device: torch.device
    n_embed: int  # K, codebook size
    embed_dim: int  # d, codebook width
    grid: int  # m: images are m x m tokens
    image_size: int  # pixels per side
    n_classes: int  # classes a class-conditional prior takes; 0: any (text-conditional)

    @property
    def codebook(self) -> torch.Tensor:
        """The codebook C (K x d) whose rows the decoder reads."""
        ...

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token grids (B x m x m or B x m^2) -> token-based embedding E (B x d x m x m)."""
        ...

    def decode_tokens(self, tokens: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """Token grids -> images in [-1, 1] (B x 3 x H x W)."""
        ...

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] at the model's resolution -> token grids (B x m x m)."""
        ...

    def sample(
        self,
        classes: Sequence[Concept],
        streams: "Streams",
        settings: SamplerSettings,
        on_step: StepCallback | None = None,
    ) -> torch.Tensor:
        """Conditional token grids (B x m x m, raster order), one image per class and stream.

        Every image draws its randomness from its own stream only (`image_streams`: philox keys, or the
        host sampler's generators), so an image's tokens do not depend on the batch it was sampled in.
        """
        ...

    def default_sampler(self) -> SamplerSettings:
        """The sampler this model is meant to be sampled with."""
        ...

    def prior_nll(self, tokens: torch.Tensor, classes: Sequence[Concept]) -> torch.Tensor:
        """An optional capability: the per-token negative log-likelihood (B,) of token grids (B x m x m)
        under the model's own prior conditioned on `classes` (one per grid, as `sample` takes them),
        teacher-forced in the order it samples.

        A backend without it raises `CortexError` (one line); callers treat that as "not available".
        """
        ...


@dataclass(frozen=True)
class ModelFiles:
    """Where a registered model's files are (the `models` row's config and checkpoint paths)."""

    config: Path
    ckpt: Path


@dataclass(frozen=True)
class ModelShape:
    """What registering a model stores about it, read without loading its weights."""

    n_embed: int
    embed_dim: int
    grid: int
    image_size: int
    n_classes: int  # 0: text-conditional (any classes, named by --labels)
    config_hash: str


class Backend(Protocol):
    """What an entry point of the group `cortex.backends` resolves to."""

    name: str

    def locate(self, path: Path | None, config: Path | None, ckpt: Path | None) -> ModelFiles:
        """The files of a model to register from what the user named; CortexError if they do not suffice."""
        ...

    def describe(self, files: ModelFiles) -> ModelShape:
        """The model's sizes and config hash, without loading weights; CortexError on a bad config."""
        ...

    def load(self, files: ModelFiles, device: torch.device | str) -> VQGM:
        """The model with strictly checked weights, frozen, on `device`; CortexError if they do not match."""
        ...


def decode_in_chunks(vqgm: VQGM, tokens: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Token grids (B x m x m or B x m^2) -> images in [-1, 1], through `embed` and `decode_embedding` `batch_size` at a time."""
    tokens = tokens.reshape(-1, vqgm.grid, vqgm.grid)
    return torch.cat([vqgm.decode_embedding(vqgm.embed(chunk)) for chunk in tokens.split(batch_size)])


def check_image_size(images: torch.Tensor, image_size: int) -> None:
    """CortexError unless `images` (... x H x W) are `image_size` pixels a side, what a VQ encoder takes."""
    if images.shape[-1] != image_size or images.shape[-2] != image_size:
        raise CortexError(f"images are {tuple(images.shape[-2:])} px; this model takes {image_size}x{image_size}")


def token_rows(tokens: torch.Tensor, classes: Sequence[Concept], grid: int, n_embed: int) -> torch.Tensor:
    """`prior_nll`'s checked input: token grids (B x m x m or B x m^2) as B x m^2 long rows, one class per grid.

    Raises:
        CortexError: another shape, a token id outside 0..K-1, or not one class per grid.
    """
    rows = tokens.flatten(1).long() if tokens.dim() > 1 else tokens.long()
    if rows.dim() != 2 or rows.shape[1] != grid * grid:
        raise CortexError(f"token grids must be B x {grid} x {grid}; got shape {tuple(tokens.shape)}")
    if len(classes) != rows.shape[0]:
        raise CortexError(f"{rows.shape[0]} grids but {len(classes)} classes; give one class per grid")
    if rows.numel() and not (0 <= int(rows.min()) and int(rows.max()) < n_embed):
        raise CortexError(f"token ids must lie in 0..{n_embed - 1}")
    return rows


def top_k_top_p_filtering(
    logits: torch.Tensor,
    top_k: int = 0,
    top_p: float = 1.0,
    filter_value: float = -float("inf"),
    min_tokens_to_keep: int = 1,
) -> torch.Tensor:
    """Mask logits outside the top-k and outside the nucleus of mass top_p (last dim)."""
    logits = logits.clone()
    if top_k and top_k > 0:
        top_k = min(max(top_k, min_tokens_to_keep), logits.size(-1))
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1, None]
        logits = logits.masked_fill(logits < kth, filter_value)
    if top_p is not None and top_p < 1.0:
        sorted_logits, sorted_idx = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative > top_p
        # keep the first token that crosses the threshold, and at least min_tokens_to_keep
        remove[..., 1:] = remove[..., :-1].clone()
        remove[..., :min_tokens_to_keep] = False
        logits = logits.masked_fill(remove.scatter(-1, sorted_idx, remove), filter_value)
    return logits


Streams = Sequence[int] | Sequence[torch.Generator]  # philox stream keys, or the host sampler's generators


def pick_tokens(logits: torch.Tensor, streams: Streams, settings: SamplerSettings, step: int = 0) -> torch.Tensor:
    """One next token per row of float logits (B x K) -> B x 1.

    Sampling is the Gumbel-max trick on the filtered logits with each row's own stream, so a row's draw
    never depends on the other rows of the batch: philox stream keys (ints) draw on the logits' device at
    counter `step`; torch generators (the host sampler) draw on the host and are copied over.
    """
    if settings.greedy:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / settings.temperature
    logits = top_k_top_p_filtering(logits, top_k=settings.top_k or 0, top_p=settings.top_p)
    if streams and not isinstance(streams[0], torch.Generator):
        noise = gumbel_noise(keys_tensor(streams, logits.device), logits.shape[-1], stream=step)
        return (logits + noise).argmax(dim=-1, keepdim=True)
    noise = torch.stack([torch.rand(logits.shape[-1], generator=g) for g in streams]).to(logits.device)
    gumbel = -torch.log((-torch.log(noise.clamp_min(1e-20))).clamp_min(1e-20))
    return (logits + gumbel).argmax(dim=-1, keepdim=True)


def image_generators(classes: Sequence[Concept], seeds: Sequence[int]) -> list[torch.Generator]:
    """Each image's host-sampler generator, keyed by (image seed, class id): the streams older stores hold."""
    return [generator_for("sample", int(seed), int(c.class_id)) for c, seed in zip(classes, seeds, strict=True)]


def stream_key(model: str, class_id: int, split: str, seed: int) -> int:
    """The philox sampler's stream key of an image: its identity (model, class id, split, image seed)."""
    return derive_seed("sample-philox", model, int(class_id), split, int(seed))


def image_streams(settings: SamplerSettings, model: str, classes: Sequence[Concept], splits: Sequence[str],
                  seeds: Sequence[int]) -> list[int] | list[torch.Generator]:
    """Each image's random stream under `settings`: a philox key (`stream_key`), or the host sampler's generator
    seeded by (`derive_seed(seed, split)`, class id) as older stores were sampled."""
    if settings.noise == "host":
        return image_generators(classes, [derive_seed(int(s), sp) for s, sp in zip(seeds, splits, strict=True)])
    return [stream_key(model, c.class_id, sp, s) for c, sp, s in zip(classes, splits, seeds, strict=True)]


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """Images in [-1, 1] (B x 3 x H x W) -> RGB PIL images."""
    arr = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(a.permute(1, 2, 0).numpy()) for a in arr]


def from_pil(images: list[Image.Image], size: int) -> torch.Tensor:
    """RGB PIL images -> tensor in [-1, 1] at `size` (centre-cropped to square, then resized)."""
    out = []
    for img in images:
        img = img.convert("RGB")
        w, h = img.size
        side = min(w, h)
        img = img.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
        if img.size != (size, size):
            img = img.resize((size, size), Image.BICUBIC)
        out.append(torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1))
    return torch.stack(out)
