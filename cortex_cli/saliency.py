"""Token saliency (paper §3.3, eq. 4-6): SmoothGrad on the token embedding E, reduced per grid cell.

    mean_grad = 1/N sum_l d f_Y(E + eps_l) / dE,   eps_l ~ N(0, sigma^2 I),  sigma = alpha (max E - min E)
    TSV(t_i)  = max_j |mean_grad(j, p_i)|

`f_Y` is the extractor's *logit* for the class Y being explained. The noise of image i is drawn
from its own generator seeded by (seed, key_i), so results do not depend on batch size or order;
noisy copies of several images are batched together in chunks, and gradients flow to the input only:
`prepare_extractor` makes a frozen copy (no weight gradients) with BatchNorm folded into the layer
before it and, for convolutions, channels-last memory, which changes results only by float rounding.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from .errors import CortexError
from .seeding import generator_for
from .extractors.subsets import require_classes

REDUCTIONS = ("max-abs", "signed-max", "mean")
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class SaliencySettings:
    """Parameters of one saliency pass (the authors' released defaults)."""

    samples: int = 20  # N noisy copies per image
    alpha: float = 0.2  # noise scale relative to the embedding's value range
    top_n: int = 20  # tokens kept per image in the index
    reduce: str = "max-abs"  # 'max-abs' (paper eq. 5), 'signed-max' (authors' code), 'mean' (mean |grad|)
    precision: str = "fp32"  # 'fp32' or 'bf16' (autocast; faster on bf16 hardware, changes rankings a little)
    seed: int = 0
    chunk: int | None = None  # noisy copies per forward/backward pass; None: by device (`default_chunk`)

    def validate(self) -> "SaliencySettings":
        """Raise CortexError on an out-of-range value; return self."""
        if self.samples < 1:
            raise CortexError(f"--samples must be >= 1, got {self.samples}")
        if not self.alpha >= 0:
            raise CortexError(f"--alpha must be >= 0, got {self.alpha}")
        if self.top_n < 1:
            raise CortexError(f"--top-n must be >= 1, got {self.top_n}")
        if self.reduce not in REDUCTIONS:
            raise CortexError(f"--reduce must be one of {', '.join(REDUCTIONS)}, got {self.reduce!r}")
        if self.precision not in PRECISIONS:
            raise CortexError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.chunk is not None and self.chunk < 1:
            raise CortexError(f"chunk must be >= 1, got {self.chunk}")
        return self


def default_chunk(device: torch.device | str) -> int:
    """Noisy copies per pass: 64 on a CPU (a bigger batch gains nothing there), 1024 on an accelerator."""
    return 64 if torch.device(device).type == "cpu" else 1024


def _fold_batchnorm(module: nn.Module) -> None:
    """Fold every eval-mode BatchNorm that directly follows a Conv2d / Linear in an nn.Sequential, in place."""
    for child in module.modules():
        if not isinstance(child, nn.Sequential):
            continue
        for i in range(len(child) - 1):
            layer, norm = child[i], child[i + 1]
            if isinstance(layer, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and norm.track_running_stats:
                child[i], child[i + 1] = fuse_conv_bn_eval(layer, norm), nn.Identity()
            elif isinstance(layer, nn.Linear) and isinstance(norm, nn.BatchNorm1d) and norm.track_running_stats:
                child[i], child[i + 1] = fuse_linear_bn_eval(layer, norm), nn.Identity()


def prepare_extractor(extractor: nn.Module, *, fold_bn: bool = True, channels_last: bool = True) -> nn.Module:
    """A frozen eval-mode copy of `extractor` for saliency: no weight gradients, BatchNorm folded, channels-last.

    The copy computes the same function up to float rounding; the caller's module is left untouched.
    Returns `extractor` itself when it was already prepared.
    """
    if getattr(extractor, "_cortex_prepared", False):
        return extractor
    net = copy.deepcopy(extractor).eval()
    if fold_bn:
        _fold_batchnorm(net)
    for p in net.parameters():
        p.requires_grad_(False)
    if channels_last and any(isinstance(m, nn.Conv2d) for m in net.modules()):
        net = net.to(memory_format=torch.channels_last)
    net._cortex_prepared = True
    net._cortex_channels_last = channels_last
    return net


def noise_scale(embeddings: torch.Tensor, alpha: float) -> torch.Tensor:
    """sigma = alpha * (max(E_i) - min(E_i)) per image -> (B,)."""
    flat = embeddings.detach().reshape(embeddings.shape[0], -1)
    return alpha * (flat.amax(dim=1) - flat.amin(dim=1))


def seeded_noise(shape: Sequence[int], keys: Sequence[int], seed: int, samples: int) -> torch.Tensor:
    """Standard-normal noise (B, N, *shape) on CPU; image i's from a generator seeded by (seed, keys[i])."""
    return torch.stack([torch.randn(samples, *shape, generator=generator_for("saliency", seed, int(k))) for k in keys])


def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def smoothgrad(
    extractor: nn.Module,
    embeddings: torch.Tensor,
    targets: Sequence[int],
    noise: torch.Tensor,
    *,
    chunk: int | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """Mean gradient of the target logit over given noisy copies (eq. 4).

    Args:
        extractor: f_Y, maps (B, d, m, m) to logits (B, classes); used as is (put it in eval mode).
        embeddings: E, (B, d, m, m).
        targets: the class index whose logit is differentiated, one per image.
        noise: the already-scaled noise eps, (B, N, d, m, m).
        chunk: noisy copies per forward/backward (copies of several images share a chunk); None: by device.
        precision: 'fp32' or 'bf16' (autocast of the forward pass).

    Returns:
        The mean gradient (B, d, m, m), float32.
    """
    b, n = noise.shape[:2]
    device = embeddings.device
    target = torch.as_tensor(list(targets), dtype=torch.long, device=device)
    if target.numel() != b:
        raise ValueError(f"{target.numel()} targets for {b} images")
    # copy k of the flattened (B*N) stack belongs to image k // N
    noisy = (embeddings.detach().float().unsqueeze(1) + noise.to(device=device, dtype=torch.float32)).flatten(0, 1)
    owner = target.repeat_interleave(n)
    grads = torch.empty_like(noisy)
    chunk = chunk or default_chunk(device)
    layout = torch.channels_last if getattr(extractor, "_cortex_channels_last", False) else torch.contiguous_format
    for start in range(0, noisy.shape[0], chunk):
        x = noisy[start:start + chunk].clone(memory_format=layout).requires_grad_(True)
        with torch.enable_grad(), _autocast(device, precision):
            logits = extractor(x)
        picked = logits.float().gather(1, owner[start:start + chunk, None]).sum()
        # each copy's logit depends on its own input only (eval mode), so d(sum)/dx is per-copy
        (grads[start:start + chunk],) = torch.autograd.grad(picked, x)
    return grads.view(b, n, *embeddings.shape[1:]).mean(dim=1)


def reduce_channels(grads: torch.Tensor, reduce: str = "max-abs") -> torch.Tensor:
    """(B, d, m, m) gradients -> (B, m, m) TSV maps (eq. 5, or a variant)."""
    if reduce == "max-abs":
        return grads.abs().amax(dim=1)
    if reduce == "signed-max":
        return grads.amax(dim=1)
    if reduce == "mean":
        return grads.abs().mean(dim=1)
    raise CortexError(f"unknown reduction {reduce!r}; use one of {', '.join(REDUCTIONS)}")


def token_saliency(
    extractor: nn.Module,
    embeddings: torch.Tensor,
    targets: Sequence[int],
    keys: Sequence[int],
    settings: SaliencySettings = SaliencySettings(),
) -> torch.Tensor:
    """Token Saliency Value maps of a batch of embeddings.

    Args:
        extractor: the information extractor f_Y; run as `prepare_extractor(extractor)` (prepare it once
            yourself when calling this per batch).
        embeddings: token-based embeddings E, (B, d, m, m).
        targets: per image, the class whose logit is explained.
        keys: per image, a stable id (e.g. the image id) that seeds its noise with `settings.seed`.
        settings: samples, alpha, reduction, precision, chunk.

    Returns:
        TSV maps (B, m, m), float32 on the embeddings' device.
    """
    settings.validate()
    if embeddings.dim() != 4:
        raise ValueError(f"embeddings must be (B, d, m, m), got {tuple(embeddings.shape)}")
    if len(keys) != embeddings.shape[0] or len(targets) != embeddings.shape[0]:
        raise ValueError("one target and one key per image")
    require_classes(extractor, targets)  # a subset extractor's other classes have a constant logit: no gradient
    sigma = noise_scale(embeddings, settings.alpha).cpu()
    noise = seeded_noise(embeddings.shape[1:], keys, settings.seed, settings.samples)
    noise = noise * sigma.view(-1, 1, 1, 1, 1)
    grads = smoothgrad(prepare_extractor(extractor), embeddings, targets, noise, chunk=settings.chunk, precision=settings.precision)
    return reduce_channels(grads, settings.reduce)


def top_positions(tsv: torch.Tensor, n: int) -> list[tuple[int, float]]:
    """The n highest-TSV grid positions (row * m + col, value), highest first; ties by position."""
    flat = tsv.detach().reshape(-1).float().cpu()
    values, order = torch.sort(flat, descending=True, stable=True)
    n = min(n, flat.numel())
    return [(int(p), float(v)) for p, v in zip(order[:n], values[:n])]
