"""Shared machinery of the attribution methods: the frozen extractor, chunked input gradients, channel reductions.

Every method maps token embeddings E (B, d, m, m) to attributions of the same shape; `reduce_channels`
turns them into Token Saliency Value maps (B, m, m) and `top_positions` ranks a map's grid cells.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from ..core.errors import CortexError

REDUCTIONS = ("max-abs", "signed-max", "mean", "sum")
PRECISIONS = ("fp32", "bf16")

# a base attribution over a flat batch: (extractor, inputs (B, d, m, m), per-input targets) -> (B, d, m, m)
Attribution = Callable[..., torch.Tensor]


def default_chunk(device: torch.device | str) -> int:
    """Inputs per forward/backward pass: 64 on a CPU (a bigger batch gains nothing there), 1024 on an accelerator."""
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


def autocast(device: torch.device, precision: str):
    """The forward pass's arithmetic: bf16 autocast, or true fp32 for 'fp32'.

    fp32 turns cuDNN's TF32 convolutions off (PyTorch allows them by default): on an H200 they moved
    the tiny test extractor's TSV by up to 17% of its largest value against the CPU's, and a saliency
    run's key says fp32. bf16 is the fast precision.
    """
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if device.type == "cuda":
        cudnn = torch.backends.cudnn
        return cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic, allow_tf32=False)
    return contextlib.nullcontext()


def target_tensor(targets: Sequence[int] | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """Per-input class indices as a long tensor; ValueError unless there is one per input."""
    target = torch.as_tensor(targets.tolist() if isinstance(targets, torch.Tensor) else list(targets), dtype=torch.long, device=device)
    if target.numel() != batch:
        raise ValueError(f"{target.numel()} targets for {batch} images")
    return target


def input_gradients(
    extractor: nn.Module,
    inputs: torch.Tensor,
    targets: Sequence[int] | torch.Tensor,
    *,
    chunk: int | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """d logit[target_k] / d input_k of every input, `chunk` inputs per forward/backward pass -> (B, d, m, m) float32."""
    device = inputs.device
    x_all = inputs.detach().float()
    owner = target_tensor(targets, x_all.shape[0], device)
    grads = torch.empty_like(x_all)
    chunk = chunk or default_chunk(device)
    layout = torch.channels_last if getattr(extractor, "_cortex_channels_last", False) else torch.contiguous_format
    for start in range(0, x_all.shape[0], chunk):
        x = x_all[start:start + chunk].clone(memory_format=layout).requires_grad_(True)
        with torch.enable_grad(), autocast(device, precision):
            logits = extractor(x)
        picked = logits.float().gather(1, owner[start:start + chunk, None]).sum()
        # each input's logit depends on that input only (eval mode), so d(sum)/dx is per-input
        (grads[start:start + chunk],) = torch.autograd.grad(picked, x)
    return grads


def reduce_channels(grads: torch.Tensor, reduce: str = "max-abs") -> torch.Tensor:
    """(B, d, m, m) attributions -> (B, m, m) TSV maps (eq. 5, or a variant; 'sum' keeps the sign and completeness)."""
    if reduce == "max-abs":
        return grads.abs().amax(dim=1)
    if reduce == "signed-max":
        return grads.amax(dim=1)
    if reduce == "mean":
        return grads.abs().mean(dim=1)
    if reduce == "sum":
        return grads.sum(dim=1)
    raise CortexError(f"unknown reduction {reduce!r}; use one of {', '.join(REDUCTIONS)}")


def top_positions(tsv: torch.Tensor, n: int) -> list[tuple[int, float]]:
    """The n highest-TSV grid positions (row * m + col, value), highest first; ties by position."""
    flat = tsv.detach().reshape(-1).float().cpu()
    values, order = torch.sort(flat, descending=True, stable=True)
    n = min(n, flat.numel())
    return [(int(p), float(v)) for p, v in zip(order[:n], values[:n])]
