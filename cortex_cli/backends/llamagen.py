"""The llamagen backend: FoundationVision's LlamaGen class-conditional ImageNet generators, written here.

LlamaGen (github.com/FoundationVision/LlamaGen, MIT) ships no package, so this module alone knows its
architecture, written to compute what the official code computes (tested against the official modules' outputs,
tests/data/llamagen/):

- the VQ tokenizer (`VQ_MODELS`: VQ-16 and VQ-8): a convolutional encoder and decoder and a codebook of 16,384
  codes of width 8 that the quantizer and the decoder read l2-normalised (`codebook_l2_norm`);
- the GPT (`GPT_MODELS`: GPT-B ... GPT-3B): LLaMA blocks (RMSNorm, SwiGLU, bias-free linears) with 2-D rotary
  embeddings over the token grid. The class is a prefix "token" at position 0, a row of `cls_embedding`, whose
  extra last row is the null class of classifier-free guidance; the prefix's rotary rows are zeros, so its
  query and key are zero vectors (the official table, kept as is).

Parameter names are the official state dicts', so official checkpoints load with strict checking (buffers
the official code rebuilds aside: RoPE `freqs_cis`, KV caches, the causal mask, the VQ's `codebook_used`).
A model is two files, the GPT checkpoint and the VQ checkpoint, plus what the official sampler is told on its
command line: `--gpt-model`, `--image-size`, `--downsample`. The codebook size comes from the VQ checkpoint
and the class count from the GPT's class table (its rows less the null row).

Sampling (`LlamaGenVQGM.sample`) is the GPU-native sampler (`sampler.sample_tokens`) over `LlamaGenDecoder`,
whose vocabulary is the image codes followed by the class rows: the prompt is one "token" `K + class id`
(`K + n_classes`, the null row, in the guided batch's second half), so the sampler drives it unchanged.
Guidance combines logits as the official `generate` does, `null + scale * (cond - null)`, on the raw logits
before temperature and top-k, at every step; a scale of 1 (or None) samples without guidance, as the
official `cfg_scale > 1.0` test does.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from ..core.errors import CortexError, first_line
from ..core.philox import keys_tensor
from . import hub
from .base import (Concept, ModelFiles, ModelShape, SamplerSettings, StepCallback, Streams, check_image_size, decode_in_chunks,
                   pick_tokens, token_rows)
from .sampler import sample_tokens

NAME = "llamagen"
PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# the official autoregressive/sample/sample_c2i.py defaults: top-k 2000, top-p 1.0, temperature 1.0, --cfg-scale 4.0
LLAMAGEN_SAMPLER = SamplerSettings(top_k=2000, top_p=1.0, temperature=1.0, guidance=4.0)
# where the official scripts keep the weights in a checkpoint (DDP "model", DeepSpeed "module"), else a bare state dict (FSDP)
STATE_KEYS = ("model", "module", "state_dict")
OPTIONS = ("gpt_model", "image_size", "downsample")


# ----------------------------------------------------------------------------------------------------------------
# configurations
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GPTConfig:
    """A LlamaGen GPT: width, depth and heads (per released size), and what the checkpoint and image size fix."""

    n_layer: int
    n_head: int
    dim: int
    vocab_size: int = 16384  # the VQ's codebook size
    n_classes: int = 1000  # the class table has one more row: the null class
    grid: int = 16  # tokens per side (image size / downsampling); the rotary table covers grid x grid
    multiple_of: int = 256  # SwiGLU hidden width is rounded up to a multiple of this
    norm_eps: float = 1e-5
    rope_base: float = 10000.0

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_head

    @property
    def ffn_dim(self) -> int:
        """The official SwiGLU width: 2/3 of 4 x dim, rounded up to a multiple of `multiple_of`."""
        hidden = int(2 * (4 * self.dim) / 3)
        return -(-hidden // self.multiple_of) * self.multiple_of

    @property
    def block_size(self) -> int:
        return self.grid * self.grid


# the official GPT_models (autoregressive/models/gpt.py) that take a class; GPT-7B is text-conditional only
GPT_MODELS: dict[str, GPTConfig] = {
    "GPT-B": GPTConfig(n_layer=12, n_head=12, dim=768),  # 111M
    "GPT-L": GPTConfig(n_layer=24, n_head=16, dim=1024),  # 343M
    "GPT-XL": GPTConfig(n_layer=36, n_head=20, dim=1280),  # 775M
    "GPT-XXL": GPTConfig(n_layer=48, n_head=24, dim=1536),  # 1.4B
    "GPT-XXXL": GPTConfig(n_layer=48, n_head=40, dim=2560),  # 3.9B
    "GPT-1B": GPTConfig(n_layer=22, n_head=32, dim=2048),  # 1.2B
    "GPT-3B": GPTConfig(n_layer=24, n_head=32, dim=3200),  # 3.1B
}


@dataclass(frozen=True)
class VQConfig:
    """A LlamaGen VQ tokenizer; downsampling is 2 ** (levels - 1)."""

    codebook_size: int = 16384
    embed_dim: int = 8
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    z_channels: int = 256
    channels: int = 128  # the official VQModel's fixed base width
    res_blocks: int = 2  # the official VQModel's fixed residual blocks per level (the decoder has one more)
    l2_norm: bool = True

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


VQ_MODELS: dict[int, VQConfig] = {16: VQConfig(ch_mult=(1, 1, 2, 2, 4)), 8: VQConfig(ch_mult=(1, 2, 2, 4))}


@dataclass(frozen=True)
class LlamaGenSpec:
    """Everything that fixes a model's architecture: the GPT, the VQ and the image size."""

    gpt: GPTConfig
    vq: VQConfig
    image_size: int
    gpt_name: str = "GPT"  # the official name of the GPT's size (not part of the hash: the sizes are)

    def shape(self) -> ModelShape:
        text = json.dumps({"backend": NAME, "gpt": dataclasses.asdict(self.gpt), "vq": dataclasses.asdict(self.vq),
                           "image_size": self.image_size}, sort_keys=True)
        return ModelShape(n_embed=self.vq.codebook_size, embed_dim=self.vq.embed_dim, grid=self.gpt.grid,
                          image_size=self.image_size, n_classes=self.gpt.n_classes,
                          config_hash=hashlib.sha256(text.encode()).hexdigest())


# ----------------------------------------------------------------------------------------------------------------
# the GPT
# ----------------------------------------------------------------------------------------------------------------
def embedding(rows: int, dim: int) -> nn.Embedding:
    """An embedding table of zeros: the weights come from a checkpoint (and a random init on the meta device is slow)."""
    return nn.Embedding(rows, dim, _weight=torch.zeros(rows, dim))


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm as LlamaGen computes it: normalised in float32, cast back, then scaled."""
    h = x.float()
    return (h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + eps)).type_as(x) * weight


def rope_table(config: GPTConfig, prefix: int = 1) -> torch.Tensor:
    """The 2-D rotary table ((prefix + grid^2) x head_dim/2 x 2: cos, sin), zeros for the class prefix.

    Each head's dimension pairs split in two halves: the first rotate with the token's row, the second with
    its column, each at frequencies base^(-2i / (head_dim/2)). Built on the CPU in float32.
    """
    half = config.head_dim // 2
    with torch.device("cpu"):  # also when the model is built on the meta device
        freqs = 1.0 / (config.rope_base ** (torch.arange(0, half, 2)[: half // 2].float() / half))
        angles = torch.outer(torch.arange(config.grid), freqs)  # grid x half/2
        rows = angles[:, None, :].expand(-1, config.grid, -1)
        cols = angles[None, :, :].expand(config.grid, -1, -1)
        grid_angles = torch.cat([rows, cols], dim=-1).flatten(0, 1)  # grid^2 x half
        table = torch.stack([torch.cos(grid_angles), torch.sin(grid_angles)], dim=-1)
        return torch.cat([torch.zeros(prefix, half, 2), table])


def apply_rope(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate (B x T x H x head_dim) by the table rows (T x head_dim/2 x 2) of its positions, in float32."""
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    cos, sin = (table[None, :, None, :, i] for i in (0, 1))
    even, odd = pairs[..., 0], pairs[..., 1]
    return torch.stack([even * cos - odd * sin, odd * cos + even * sin], dim=-1).flatten(3).type_as(x)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


class Attention(nn.Module):
    """Fused q/k/v projection `wqkv` and output `wo`, no biases, rotary q and k."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.head_dim = config.n_head, config.head_dim
        self.wqkv = nn.Linear(config.dim, 3 * config.dim, bias=False)
        self.wo = nn.Linear(config.dim, config.dim, bias=False)

    def forward(self, x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        b, t, dim = x.shape
        q, k, v = self.wqkv(x).view(b, t, 3, self.n_head, self.head_dim).unbind(2)
        q, k, v = apply_rope(q, rope).transpose(1, 2), apply_rope(k, rope).transpose(1, 2), v.transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.wo(y.transpose(1, 2).reshape(b, t, dim))


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.w1 = nn.Linear(config.dim, config.ffn_dim, bias=False)
        self.w3 = nn.Linear(config.dim, config.ffn_dim, bias=False)
        self.w2 = nn.Linear(config.ffn_dim, config.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.attention = Attention(config)
        self.feed_forward = FeedForward(config)
        self.attention_norm = RMSNorm(config.dim, config.norm_eps)
        self.ffn_norm = RMSNorm(config.dim, config.norm_eps)

    def forward(self, x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), rope)
        return x + self.feed_forward(self.ffn_norm(x))


class ClassEmbedding(nn.Module):
    """The class table: one row per class, then the null class's (the official `LabelEmbedder`)."""

    def __init__(self, n_classes: int, dim: int):
        super().__init__()
        self.embedding_table = embedding(n_classes + 1, dim)


class LlamaGenGPT(nn.Module):
    """The class-conditional GPT with the official parameter names; `forward` is the teacher-forced pass."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.cls_embedding = ClassEmbedding(config.n_classes, config.dim)
        self.tok_embeddings = embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(TransformerBlock(config) for _ in range(config.n_layer))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        self.register_buffer("rope", rope_table(config), persistent=False)

    def forward(self, tokens: torch.Tensor, class_ids: torch.Tensor) -> torch.Tensor:
        """Float logits (B x (1 + T) x V) of the class prefix then tokens (B x T); position i predicts token i."""
        prefix = self.cls_embedding.embedding_table(class_ids)[:, None]
        x = torch.cat([prefix, self.tok_embeddings(tokens)], dim=1)
        rope = self.rope[: x.shape[1]]
        for layer in self.layers:
            x = layer(x, rope)
        return self.output(self.norm(x)).float()


# ----------------------------------------------------------------------------------------------------------------
# the VQ tokenizer
# ----------------------------------------------------------------------------------------------------------------
def swish(x: torch.Tensor) -> torch.Tensor:
    """The VQ's nonlinearity, written as the official model writes it (x * sigmoid(x))."""
    return x * torch.sigmoid(x)


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(swish(self.norm2(h)))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the pixels of a feature map, with 1x1-conv projections."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (conv(y).reshape(b, 1, c, h * w).transpose(2, 3) for conv in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v).transpose(2, 3).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # pad right and bottom only, as the official model does


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution of the encoder or decoder: residual blocks, attention after each at the coarsest level."""

    def __init__(self, channels_in: int, channels_out: int, blocks: int, attend: bool):
        super().__init__()
        self.res = nn.ModuleList()
        self.attn = nn.ModuleList()
        for _ in range(blocks):
            self.res.append(ResnetBlock(channels_in, channels_out))
            channels_in = channels_out
            if attend:
                self.attn.append(AttnBlock(channels_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.res):
            x = block(x)
            if len(self.attn):
                x = self.attn[i](x)
        return x


def middle(channels: int) -> nn.ModuleList:
    return nn.ModuleList([ResnetBlock(channels, channels), AttnBlock(channels), ResnetBlock(channels, channels)])


class Encoder(nn.Module):
    def __init__(self, config: VQConfig):
        super().__init__()
        ch, mult, levels = config.channels, config.ch_mult, len(config.ch_mult)
        self.conv_in = nn.Conv2d(3, ch, 3, padding=1)
        self.conv_blocks = nn.ModuleList()
        widths_in = (1,) + tuple(mult)  # a level takes the previous level's width
        channels = ch
        for i in range(levels):
            channels = ch * widths_in[i]
            level = Level(channels, ch * mult[i], config.res_blocks, attend=i == levels - 1)
            channels = ch * mult[i] if config.res_blocks else channels  # without blocks the width stays, as officially
            if i != levels - 1:
                level.downsample = Downsample(channels)
            self.conv_blocks.append(level)
        self.mid = middle(channels)
        self.norm_out = group_norm(channels)
        self.conv_out = nn.Conv2d(channels, config.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.conv_blocks:
            h = level(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        for block in self.mid:
            h = block(h)
        return self.conv_out(swish(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, config: VQConfig):
        super().__init__()
        ch, mult, levels = config.channels, config.ch_mult, len(config.ch_mult)
        channels = ch * mult[-1]
        self.conv_in = nn.Conv2d(config.z_channels, channels, 3, padding=1)
        self.mid = middle(channels)
        self.conv_blocks = nn.ModuleList()
        for i in reversed(range(levels)):
            level = Level(channels, ch * mult[i], config.res_blocks + 1, attend=i == levels - 1)
            channels = ch * mult[i]
            if i != 0:
                level.upsample = Upsample(channels)
            self.conv_blocks.append(level)
        self.norm_out = group_norm(channels)
        self.conv_out = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        for block in self.mid:
            h = block(h)
        for level in self.conv_blocks:
            h = level(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(swish(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """The codebook; with `l2_norm` both the codes and the encoder's vectors are compared (and decoded) normalised."""

    def __init__(self, config: VQConfig):
        super().__init__()
        self.l2_norm = config.l2_norm
        self.embedding = embedding(config.codebook_size, config.embed_dim)

    def codes(self) -> torch.Tensor:
        """The code vectors (K x d) the decoder reads."""
        weight = self.embedding.weight
        return F.normalize(weight, p=2, dim=-1) if self.l2_norm else weight

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Indices (B x h x w) of the nearest codes to z (B x d x h x w), by the official squared distance."""
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        if self.l2_norm:
            flat = F.normalize(flat, p=2, dim=-1)
        codes = self.codes()
        distance = flat.pow(2).sum(1, keepdim=True) + codes.pow(2).sum(1) - 2 * flat @ codes.T
        return distance.argmin(dim=1).reshape(z.shape[0], z.shape[2], z.shape[3])


class LlamaGenVQ(nn.Module):
    """The VQ tokenizer with the official parameter names."""

    def __init__(self, config: VQConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quantize = VectorQuantizer(config)
        self.quant_conv = nn.Conv2d(config.z_channels, config.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.z_channels, 1)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B x 3 x H x W) -> code indices (B x H/f x W/f)."""
        return self.quantize.nearest(self.quant_conv(self.encoder(images)))

    def decode(self, embedding: torch.Tensor) -> torch.Tensor:
        """Code vectors (B x d x m x m) -> images (B x 3 x H x W), unclamped."""
        return self.decoder(self.post_quant_conv(embedding))


# ----------------------------------------------------------------------------------------------------------------
# the decoder the sampler drives
# ----------------------------------------------------------------------------------------------------------------
class CastLayer(nn.Module):
    """One transformer block's weights in the sampling dtype (fp32: the model's own tensors, not copies)."""

    def __init__(self, block: TransformerBlock, dtype: torch.dtype):
        super().__init__()
        weights = {"attention_norm": block.attention_norm.weight, "wqkv": block.attention.wqkv.weight,
                   "wo": block.attention.wo.weight, "ffn_norm": block.ffn_norm.weight, "w1": block.feed_forward.w1.weight,
                   "w3": block.feed_forward.w3.weight, "w2": block.feed_forward.w2.weight}
        for name, weight in weights.items():
            self.register_buffer(name, weight.detach().to(dtype), persistent=False)


class LlamaGenDecoder(nn.Module):
    """The GPT ready for the GPU-native sampler (`sampler.Decoder`): weights cast once to the sampling dtype, a static
    KV cache (buffers of fixed address, so a captured step keeps them), attention by `scaled_dot_product_attention`.

    Its vocabulary is the K image codes followed by the class table: token `K + c` at position 0 is class c's
    prefix (`K + n_classes` the null class), so the sampler's prompt is the class and nothing else changes.
    """

    def __init__(self, gpt: LlamaGenGPT, dtype: torch.dtype):
        super().__init__()
        self.config, self.dtype = gpt.config, dtype
        table = torch.cat([gpt.tok_embeddings.weight, gpt.cls_embedding.embedding_table.weight]).detach()
        self.register_buffer("embeddings", table.to(dtype), persistent=False)
        self.register_buffer("rope", gpt.rope.detach().clone(), persistent=False)
        self.register_buffer("norm", gpt.norm.weight.detach().to(dtype), persistent=False)
        self.register_buffer("output", gpt.output.weight.detach().to(dtype), persistent=False)
        self.layers = nn.ModuleList(CastLayer(block, dtype) for block in gpt.layers)
        self._caches: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.k_cache = self.v_cache = self.causal = None

    def setup_cache(self, batch: int, length: int) -> None:
        """Select the static KV cache for `batch` rows of `length` positions (allocated, zeroed, on first use)."""
        if length > self.rope.shape[0]:
            raise CortexError(f"the GPT's rotary table covers {self.rope.shape[0]} positions, not {length}")
        if (batch, length) not in self._caches:
            cfg, device = self.config, self.embeddings.device
            shape = (cfg.n_layer, batch, cfg.n_head, length, cfg.head_dim)
            causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()
            self._caches[(batch, length)] = (torch.zeros(shape, device=device, dtype=self.dtype),
                                             torch.zeros(shape, device=device, dtype=self.dtype), causal)
        self.k_cache, self.v_cache, self.causal = self._caches[(batch, length)]

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, visible: int | None = None) -> torch.Tensor:
        """Float logits (B x T x K) of tokens (B x T) at cache positions (T,); their keys and values go to the cache.

        `visible` (eager callers only): attend to the first `visible` cache positions instead of the whole masked cache.
        """
        cfg = self.config
        b, t = tokens.shape
        x = F.embedding(tokens, self.embeddings)
        rope = self.rope[positions]
        end = self.k_cache.shape[3] if visible is None else visible
        mask = self.causal[positions, :end]
        for i, layer in enumerate(self.layers):
            h = rms_norm(x, layer.attention_norm, cfg.norm_eps)
            q, k, v = F.linear(h, layer.wqkv).view(b, t, 3, cfg.n_head, cfg.head_dim).unbind(2)
            self.k_cache[i, :, :, positions] = apply_rope(k, rope).transpose(1, 2)
            self.v_cache[i, :, :, positions] = v.transpose(1, 2)
            y = F.scaled_dot_product_attention(apply_rope(q, rope).transpose(1, 2), self.k_cache[i, :, :, :end],
                                               self.v_cache[i, :, :, :end], attn_mask=mask)
            x = x + F.linear(y.transpose(1, 2).reshape(b, t, cfg.dim), layer.wo)
            h = rms_norm(x, layer.ffn_norm, cfg.norm_eps)
            x = x + F.linear(F.silu(F.linear(h, layer.w1)) * F.linear(h, layer.w3), layer.w2)
        return F.linear(rms_norm(x, self.norm, cfg.norm_eps), self.output).float()


# ----------------------------------------------------------------------------------------------------------------
# the model as cortex sees it
# ----------------------------------------------------------------------------------------------------------------
class LlamaGenVQGM:
    """A loaded LlamaGen (VQ tokenizer + class-conditional GPT) as a `VQGM`."""

    backend = NAME

    def __init__(self, gpt: LlamaGenGPT, vq: LlamaGenVQ, spec: LlamaGenSpec, device: torch.device):
        self.gpt, self.vq, self.spec, self.device = gpt, vq, spec, device
        shape = spec.shape()
        self.n_embed, self.embed_dim, self.grid = shape.n_embed, shape.embed_dim, shape.grid
        self.image_size, self.n_classes = shape.image_size, shape.n_classes
        self._codebook = vq.quantize.codes().detach()
        self._decoders: dict[str, LlamaGenDecoder] = {}

    @property
    def codebook(self) -> torch.Tensor:
        """The codebook C (K x d): the l2-normalised code vectors the decoder reads."""
        return self._codebook

    @property
    def prior_shape(self) -> tuple[int, int]:
        """The GPT's (layers, width): what one image's KV cache holds per position."""
        return self.gpt.config.n_layer, self.gpt.config.dim

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token grids (B x m x m or B x m^2) -> token-based embedding E (B x d x m x m)."""
        tokens = tokens.to(self.device).long().reshape(-1, self.grid, self.grid)
        return F.embedding(tokens, self.codebook).permute(0, 3, 1, 2).contiguous()

    @torch.no_grad()
    def decode_embedding(self, embedding: torch.Tensor) -> torch.Tensor:
        """E (B x d x m x m) -> images in [-1, 1] (B x 3 x H x W)."""
        return self.vq.decode(embedding.to(self.device)).clamp(-1, 1)

    def decode_tokens(self, tokens: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """Token grids -> images in [-1, 1] (the official `decode_code`, clamped)."""
        return decode_in_chunks(self, tokens, batch_size)

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] at the model's resolution -> token grids (B x m x m), the official quantizer's choice."""
        check_image_size(images, self.image_size)
        return self.vq.encode(images.to(self.device))

    def default_sampler(self) -> SamplerSettings:
        """The official sample_c2i.py defaults: top-k 2000 (capped at K), top-p 1, temperature 1, guidance 4."""
        return dataclasses.replace(LLAMAGEN_SAMPLER, top_k=min(LLAMAGEN_SAMPLER.top_k, self.n_embed))

    def decoder(self, precision: str = "fp32") -> LlamaGenDecoder:
        """The GPT as a `LlamaGenDecoder` in `precision` ('fp32' or 'bf16'), built once per precision and kept."""
        if precision not in PRECISION_DTYPES:
            raise CortexError(f"sampling precision must be one of {', '.join(PRECISION_DTYPES)}, got {precision!r}")
        if precision not in self._decoders:
            self._decoders[precision] = LlamaGenDecoder(self.gpt, PRECISION_DTYPES[precision])
        return self._decoders[precision]

    def class_ids(self, classes: Sequence[Concept]) -> torch.Tensor:
        """The classes' ids (B,) on the device; CortexError for one outside the model's classes."""
        ids = [int(c.class_id) for c in classes]
        for cid in ids:
            if not 0 <= cid < self.n_classes:
                raise CortexError(f"class id {cid} is outside this model's {self.n_classes} classes")
        return torch.tensor(ids, dtype=torch.long, device=self.device)

    @staticmethod
    def guided(settings: SamplerSettings) -> bool:
        """Whether `settings` sample with classifier-free guidance: a scale above 1 (the official `cfg_scale > 1.0`)."""
        if settings.guidance is None:
            return False
        if not settings.guidance >= 1.0:
            raise CortexError(f"guidance scale must be >= 1 (1: none), got {settings.guidance}")
        return settings.guidance > 1.0

    @torch.no_grad()
    def sample(self, classes: Sequence[Concept], streams: Streams, settings: SamplerSettings,
               on_step: StepCallback | None = None) -> torch.Tensor:
        """Class-conditional token grids (B x m x m, raster order), one image per class and stream.

        The philox sampler (the default) runs `sampler.sample_tokens` over `decoder(settings.precision)`; with
        guidance the batch is doubled, the conditioned rows then the null class's. The host sampler (`noise='host'`)
        takes the same steps eagerly with each image's torch generator (`base.pick_tokens`).
        """
        if len(classes) != len(streams):
            raise ValueError("classes and streams must have the same length")
        ids = self.class_ids(classes)
        guided = self.guided(settings)
        prompt = (self.n_embed + ids)[:, None]
        if guided:
            prompt = torch.cat([prompt, torch.full_like(prompt, self.n_embed + self.n_classes)])
        steps = self.grid * self.grid
        if settings.noise == "host":
            out = self._sample_eager(prompt, list(streams), settings, guided, on_step)
        else:
            if streams and isinstance(streams[0], torch.Generator):
                raise ValueError("the philox sampler takes stream keys (`base.image_streams`), not torch generators")
            run = settings if guided else dataclasses.replace(settings, guidance=None)
            out = sample_tokens(self.decoder(settings.precision), prompt, steps, self.n_embed,
                                keys_tensor(streams, self.device), run, on_step)
        return out.reshape(len(classes), self.grid, self.grid)

    def _sample_eager(self, prompt: torch.Tensor, streams: list, settings: SamplerSettings, guided: bool,
                      on_step: StepCallback | None) -> torch.Tensor:
        """The host sampler: the decoder step by step, guidance as the official `generate`, each image's own stream."""
        decoder = self.decoder(settings.precision)
        steps, rows = self.grid * self.grid, prompt.shape[0]
        decoder.setup_cache(rows, 1 + steps)
        out = torch.empty(len(streams), steps, dtype=torch.long, device=self.device)
        positions = torch.arange(1 + steps, device=self.device)
        logits = decoder(prompt, positions[:1], 1)[:, -1]
        for n in range(steps):
            if guided:
                cond, null = logits.chunk(2)
                logits = null + settings.guidance * (cond - null)
            token = pick_tokens(logits, streams, settings, step=n)
            out[:, n] = token[:, 0]
            if on_step is not None:
                on_step(n + 1, steps)
            if n + 1 < steps:
                logits = decoder(torch.cat([token, token]) if guided else token, positions[n + 1:n + 2], n + 2)[:, -1]
        return out

    @torch.no_grad()
    def prior_nll(self, tokens: torch.Tensor, classes: Sequence[Concept], batch_size: int = 32) -> torch.Tensor:
        """Per-token negative log-likelihood (B,) on the CPU of grids under the GPT conditioned on their classes.

        Teacher-forced in raster order (the official training forward): the class prefix predicts the first token,
        token i - 1 the i-th; without guidance (a sampling heuristic, not the model's likelihood). The mean of
        -log p over the m^2 positions is the official cross-entropy of the grid.
        """
        if batch_size < 1:
            raise CortexError(f"batch_size must be at least 1, got {batch_size}")
        rows = token_rows(tokens, classes, self.grid, self.n_embed).to(self.device)
        ids = self.class_ids(classes)
        out = []
        for start in range(0, rows.shape[0], batch_size):
            chunk = rows[start:start + batch_size]
            logits = self.gpt(chunk[:, :-1], ids[start:start + batch_size])
            logp = logits.log_softmax(dim=-1).gather(-1, chunk[..., None])[..., 0]
            out.append(-logp.mean(dim=1).cpu())
        return torch.cat(out) if out else torch.zeros(0)


# ----------------------------------------------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------------------------------------------
def _namespace_allowed() -> contextlib.AbstractContextManager:
    """Weights-only loading that accepts the argparse.Namespace the official training scripts save (torch >= 2.5)."""
    allow = getattr(torch.serialization, "safe_globals", None)
    return allow([argparse.Namespace]) if allow is not None else contextlib.nullcontext()


def _torch_load(path: Path) -> Any:
    """A torch file's object: weights-only first (memory-mapped where the format allows), then a full unpickle,
    as the official training checkpoints pickle their argparse arguments and optimiser state."""
    attempts = ({"weights_only": True, "mmap": True}, {"weights_only": True}, {"weights_only": False})
    error: Exception | None = None
    for kwargs in attempts:
        try:
            with _namespace_allowed():
                return torch.load(path, map_location="cpu", **kwargs)
        except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ModuleNotFoundError) as exc:
            error = exc
        except (EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
            error = exc
            break
    raise CortexError(f"checkpoint {str(path)!r} is not a torch checkpoint: {first_line(error)}") from error


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of an official LlamaGen checkpoint: under "model", "module" or "state_dict", or bare (FSDP);
    `.safetensors` files are read as one state dict.

    Raises:
        CortexError: a missing or unreadable file, or no state dict of tensors in it (one line).
    """
    path = Path(path)
    if not path.is_file():
        raise CortexError(f"checkpoint {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as exc:
            raise CortexError(f"checkpoint {str(path)!r} is not a readable safetensors file: {first_line(exc)}") from exc
    obj = _torch_load(path)
    if isinstance(obj, dict):
        obj = next((obj[key] for key in STATE_KEYS if isinstance(obj.get(key), dict)), obj)
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CortexError(f"checkpoint {str(path)!r} holds no state dict of tensors (looked under {', '.join(STATE_KEYS)} and at the top)")
    return obj


@torch.no_grad()
def seeded_init(module: nn.Module, seed: int, device: torch.device | str = "cpu") -> nn.Module:
    """Seeded random weights for a module materialised with `to_empty` (benchmarks and tests of released sizes):
    normal(0, 0.02) for every linear, convolution and embedding (the official init, except that its zero-initialised
    output layer and embeddings are random here too, so greedy sampling has no ties), zero biases, unit norms."""
    gen = torch.Generator(device=device).manual_seed(seed)
    for sub in module.modules():
        if isinstance(sub, (nn.Linear, nn.Conv2d, nn.Embedding)):
            sub.weight.normal_(0.0, 0.02, generator=gen)
            if getattr(sub, "bias", None) is not None:
                sub.bias.zero_()
        elif isinstance(sub, (RMSNorm, nn.GroupNorm)):
            sub.weight.fill_(1.0)
            if getattr(sub, "bias", None) is not None:
                sub.bias.zero_()
    return module


def _rebuilt_gpt_buffer(key: str) -> bool:
    """GPT entries the official code rebuilds (RoPE table, causal mask, KV caches): never part of the weights."""
    return key in ("freqs_cis", "causal_mask") or ".kv_cache." in key


def _rebuilt_vq_buffer(key: str) -> bool:
    """The VQ's training statistic of recently used codes (`codebook_show_usage`)."""
    return key == "quantize.codebook_used"


def _some(keys: list[str], limit: int = 6) -> str:
    return ", ".join(keys[:limit]) + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def checked_state(state: Mapping[str, torch.Tensor], module: nn.Module, path: Path, what: str,
                  rebuilt: Callable[[str], bool]) -> dict[str, torch.Tensor]:
    """The checkpoint's entries for `module` as float32, or a one-line CortexError naming missing or unexpected
    keys or the first size mismatch; entries the official code rebuilds (`rebuilt`) are dropped."""
    expected = module.state_dict()
    state = {k: v for k, v in state.items() if not rebuilt(k)}
    missing = sorted(k for k in expected if k not in state)
    unexpected = sorted(k for k in state if k not in expected)
    if missing or unexpected:
        parts = ([f"missing keys: {_some(missing)}"] if missing else []) + ([f"unexpected keys: {_some(unexpected)}"] if unexpected else [])
        raise CortexError(f"checkpoint {str(path)!r} does not match the {what}; " + "; ".join(parts))
    wrong = [k for k in expected if tuple(state[k].shape) != tuple(expected[k].shape)]
    if wrong:
        k = wrong[0]
        more = f" (+{len(wrong) - 1} more)" if len(wrong) > 1 else ""
        raise CortexError(f"checkpoint {str(path)!r} does not match the {what}; size of {k} is {tuple(state[k].shape)}, "
                          f"the {what} has {tuple(expected[k].shape)}{more}")
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _gpt_size(state: Mapping[str, torch.Tensor], gpt_model: str | GPTConfig | None, path: Path) -> tuple[str, GPTConfig]:
    """The GPT size `gpt_model` names (or, None, the released size whose depth and width the checkpoint has)."""
    if isinstance(gpt_model, GPTConfig):
        return "GPT", gpt_model
    if gpt_model is not None and gpt_model not in GPT_MODELS:
        raise CortexError(f"unknown gpt_model {gpt_model!r}; LlamaGen's class-conditional GPTs are {', '.join(GPT_MODELS)}")
    depth = sum(1 for k in state if k.startswith("layers.") and k.endswith(".attention.wqkv.weight"))
    width = int(state["tok_embeddings.weight"].shape[1]) if "tok_embeddings.weight" in state else None
    found = [name for name, cfg in GPT_MODELS.items() if (cfg.n_layer, cfg.dim) == (depth, width)]
    if gpt_model is None:
        if not found:
            raise CortexError(f"checkpoint {str(path)!r} is no released LlamaGen GPT ({depth} layers of width {width}); name its gpt_model")
        gpt_model = found[0]
    elif found and gpt_model not in found:
        raise CortexError(f"checkpoint {str(path)!r} holds a {found[0]} ({depth} layers of width {width}), not a {gpt_model}")
    return gpt_model, GPT_MODELS[gpt_model]


def _vq_config(state: Mapping[str, torch.Tensor], downsample: int | VQConfig) -> VQConfig:
    """The VQ `downsample` names (16 or 8, or a VQConfig), with the codebook size and width of the checkpoint."""
    if isinstance(downsample, VQConfig):
        config = downsample
    elif downsample in VQ_MODELS:
        config = VQ_MODELS[downsample]
    else:
        raise CortexError(f"downsample must be one of {', '.join(map(str, VQ_MODELS))} (VQ-16, VQ-8), got {downsample!r}")
    codes = state.get("quantize.embedding.weight")
    if codes is not None and codes.dim() == 2:
        config = dataclasses.replace(config, codebook_size=int(codes.shape[0]), embed_dim=int(codes.shape[1]))
    return config


def plan(gpt_state: Mapping[str, torch.Tensor], vq_state: Mapping[str, torch.Tensor], gpt_model: str | GPTConfig | None,
         image_size: int, downsample: int | VQConfig, gpt_path: Path, vq_path: Path) -> LlamaGenSpec:
    """The architecture the two checkpoints and the sampler's options describe; CortexError where they disagree."""
    vq = _vq_config(vq_state, downsample)
    if image_size < vq.downsample or image_size % vq.downsample:
        raise CortexError(f"image_size {image_size} is not a multiple of the VQ's downsampling {vq.downsample}")
    name, size = _gpt_size(gpt_state, gpt_model, gpt_path)
    table = gpt_state.get("cls_embedding.embedding_table.weight")
    n_classes = int(table.shape[0]) - 1 if table is not None else size.n_classes
    tokens = gpt_state.get("tok_embeddings.weight")
    if tokens is not None and int(tokens.shape[0]) != vq.codebook_size:
        raise CortexError(f"the GPT {str(gpt_path)!r} has {int(tokens.shape[0])} image tokens but the VQ {str(vq_path)!r} "
                          f"has {vq.codebook_size} codes; they are not one model")
    gpt = dataclasses.replace(size, vocab_size=vq.codebook_size, n_classes=n_classes, grid=image_size // vq.downsample)
    return LlamaGenSpec(gpt=gpt, vq=vq, image_size=image_size, gpt_name=name)


def describe_llamagen(gpt_ckpt: str | Path, vq_ckpt: str | Path, gpt_model: str | GPTConfig | None, image_size: int,
                      downsample: int | VQConfig = 16) -> ModelShape:
    """A LlamaGen model's sizes and config hash from its two checkpoints' shapes (memory-mapped, weights unread)."""
    gpt_ckpt, vq_ckpt = Path(gpt_ckpt), Path(vq_ckpt)
    return plan(read_checkpoint(gpt_ckpt), read_checkpoint(vq_ckpt), gpt_model, image_size, downsample, gpt_ckpt, vq_ckpt).shape()


def load_llamagen(gpt_ckpt: str | Path, vq_ckpt: str | Path, gpt_model: str | GPTConfig | None, image_size: int,
                  downsample: int | VQConfig = 16, device: torch.device | str = "cpu") -> LlamaGenVQGM:
    """Load a LlamaGen model from official checkpoints with strict key and size checking, frozen, on `device`.

    Args:
        gpt_ckpt: the GPT checkpoint (e.g. c2i_L_384.pt).
        vq_ckpt: the VQ checkpoint (e.g. vq_ds16_c2i.pt).
        gpt_model: an official name (`GPT_MODELS`: 'GPT-B' ... 'GPT-3B'), a `GPTConfig` for other sizes, or None:
            the released size with the checkpoint's depth and width.
        image_size: pixels per side the GPT was trained at (256 or 384 for the released ImageNet models).
        downsample: 16 (VQ-16) or 8 (VQ-8), or a `VQConfig` for other tokenizers.
        device: where to put the model.

    Raises:
        CortexError: unreadable files, an unknown gpt_model, or checkpoints that do not match (named keys, sizes).
    """
    gpt_ckpt, vq_ckpt = Path(gpt_ckpt), Path(vq_ckpt)
    gpt_state, vq_state = read_checkpoint(gpt_ckpt), read_checkpoint(vq_ckpt)
    spec = plan(gpt_state, vq_state, gpt_model, image_size, downsample, gpt_ckpt, vq_ckpt)
    with torch.device("meta"):  # no random init of billions of weights: the checkpoint's tensors are assigned
        gpt, vq = LlamaGenGPT(spec.gpt), LlamaGenVQ(spec.vq)
    gpt.load_state_dict(checked_state(gpt_state, gpt, gpt_ckpt, f"LlamaGen {spec.gpt_name}", _rebuilt_gpt_buffer), assign=True)
    vq.load_state_dict(checked_state(vq_state, vq, vq_ckpt, f"LlamaGen VQ-{spec.vq.downsample}", _rebuilt_vq_buffer), assign=True)
    device = torch.device(device)
    gpt = gpt.to(device).eval().requires_grad_(False)
    vq = vq.to(device).eval().requires_grad_(False)
    return LlamaGenVQGM(gpt, vq, spec, device)


# ----------------------------------------------------------------------------------------------------------------
# the backend
# ----------------------------------------------------------------------------------------------------------------
def parse_options(options: Mapping[str, str] | None) -> dict[str, Any]:
    """`gpt_model` (optional: inferred from the checkpoint), `image_size` (required), `downsample` (16 or 8; 16)."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise CortexError(f"unknown llamagen option(s) {', '.join(unknown)}; known: {', '.join(OPTIONS)}")
    if not options.get("image_size"):
        raise CortexError("a llamagen model needs its image size (--image-size 256 or 384 for the released ImageNet models)")
    parsed: dict[str, Any] = {"gpt_model": options.get("gpt_model") or None}
    for key, default in (("image_size", None), ("downsample", "16")):
        text = str(options.get(key) or default)
        try:
            parsed[key] = int(text)
        except ValueError:
            raise CortexError(f"llamagen option {key} must be an integer, got {text!r}") from None
    return parsed


class LlamaGenBackend:
    """LlamaGen class-conditional models: two official checkpoints and the sampler's options.

    `ModelFiles.config` is the VQ checkpoint (`--vq-ckpt`) and `ModelFiles.ckpt` the GPT checkpoint (`--gpt-ckpt`);
    either may be a Hub file, `hf://OWNER/REPO[@REVISION]/path` (`hub.resolve_path`, e.g.
    hf://FoundationVision/LlamaGen/c2i_L_384.pt). `options` (keyword-only, strings as a command line gives them):
    `gpt_model` ('GPT-B' ... 'GPT-3B'; inferred from the checkpoint when absent), `image_size` (required) and
    `downsample` (16 or 8, default 16), which the registry must keep with the model's files.
    """

    name = NAME

    def locate(self, path: Path | None, config: Path | None, ckpt: Path | None, *,
               options: Mapping[str, str] | None = None) -> ModelFiles:
        if path is not None:
            raise CortexError(f"the llamagen backend takes --vq-ckpt and --gpt-ckpt, not a path ({str(path)!r})")
        if config is None or ckpt is None:
            raise CortexError("a llamagen model needs --vq-ckpt (its VQ checkpoint) and --gpt-ckpt (its GPT checkpoint)")
        parse_options(options)
        files = [hub.resolve_path(p) for p in (config, ckpt)]
        for p in files:
            if not p.is_file():
                raise CortexError(f"checkpoint {str(p)!r} does not exist")
        return ModelFiles(files[0].resolve(), files[1].resolve())

    def describe(self, files: ModelFiles, *, options: Mapping[str, str] | None = None) -> ModelShape:
        return describe_llamagen(files.ckpt, files.config, **parse_options(options))

    def load(self, files: ModelFiles, device: torch.device | str, *, options: Mapping[str, str] | None = None) -> LlamaGenVQGM:
        return load_llamagen(files.ckpt, files.config, device=device, **parse_options(options))


BACKEND = LlamaGenBackend()
