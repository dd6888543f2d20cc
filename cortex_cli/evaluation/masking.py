"""Masking the pixel patches under token positions (the paper's image- and concept-level tests).

A token at grid position (r, c) of an m x m grid covers the (H/m) x (W/m) pixel patch whose top-left
corner is (r*H/m, c*W/m): the VQGAN's receptive field is wider, but this is the patch the authors
blacked out. Positions are flat raster indices `r * m + c`.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..errors import CortexError

FILLS = ("black", "mean", "blur")


def _check_grid(grid: int, height: int, width: int) -> tuple[int, int]:
    if grid <= 0 or height % grid or width % grid:
        raise CortexError(f"images of {height}x{width} px do not split into a {grid}x{grid} token grid")
    return height // grid, width // grid


def _as_positions(positions: Sequence[int] | torch.Tensor, grid: int) -> torch.Tensor:
    pos = torch.as_tensor(positions, dtype=torch.long).reshape(-1)
    if pos.numel() and (int(pos.min()) < 0 or int(pos.max()) >= grid * grid):
        raise CortexError(f"token positions must lie in 0..{grid * grid - 1} for a {grid}x{grid} grid")
    return pos


def token_mask(positions: Sequence[int] | torch.Tensor, grid: int) -> torch.Tensor:
    """Bool (m, m): True at the given flat positions."""
    flat = torch.zeros(grid * grid, dtype=torch.bool)
    flat[_as_positions(positions, grid)] = True
    return flat.reshape(grid, grid)


def patch_mask(positions: Sequence[int] | torch.Tensor, grid: int, image_size: int | tuple[int, int]) -> torch.Tensor:
    """The pixels covered by the patches of token `positions`.

    Args:
        positions: flat token positions (row * grid + col).
        grid: m, the token grid side.
        image_size: H (square) or (H, W), divisible by `grid`.

    Returns:
        BoolTensor (H, W), True inside the chosen patches.
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    ph, pw = _check_grid(grid, height, width)
    tokens = token_mask(positions, grid)
    return tokens.repeat_interleave(ph, dim=0).repeat_interleave(pw, dim=1)


def _blurred(images: torch.Tensor, patch: int) -> torch.Tensor:
    """A heavy Gaussian blur (sigma = 2 patches) that wipes out detail at patch scale."""
    sigma = 2.0 * patch
    kernel = min(int(6 * sigma) | 1, (min(images.shape[-2:]) - 1) | 1)  # odd, and reflect padding needs < side
    if kernel >= min(images.shape[-2:]):
        kernel -= 2
    # deliberate lazy import: torchvision pulls in torch._dynamo, ~2 s on every cortex start; only this fill needs it
    from torchvision.transforms.functional import gaussian_blur

    return gaussian_blur(images, [kernel, kernel], [sigma, sigma])


def mask_patches(
    images: torch.Tensor,
    positions: Sequence[Sequence[int] | torch.Tensor],
    grid: int,
    fill: str = "black",
) -> torch.Tensor:
    """Copies of `images` with the pixel patches of each image's token positions filled.

    Args:
        images: (B, 3, H, W) in [-1, 1].
        positions: one sequence of flat token positions per image (may be empty).
        grid: m, the token grid side.
        fill: 'black' (-1, as the paper), 'mean' (the image's mean colour), or 'blur'
            (a heavy Gaussian blur of the same image inside the patch).

    Returns:
        (B, 3, H, W): untouched outside the patches.
    """
    if fill not in FILLS:
        raise CortexError(f"unknown fill {fill!r}; choose from {', '.join(FILLS)}")
    if images.ndim != 4:
        raise CortexError(f"images must be (B, 3, H, W); got shape {tuple(images.shape)}")
    if len(positions) != images.shape[0]:
        raise CortexError(f"{len(positions)} position lists for {images.shape[0]} images")
    height, width = images.shape[-2:]
    ph, _ = _check_grid(grid, height, width)
    masks = torch.stack([patch_mask(p, grid, (height, width)) for p in positions]).to(images.device)[:, None]
    if fill == "black":
        replacement = torch.full_like(images, -1.0)
    elif fill == "mean":
        replacement = images.mean(dim=(2, 3), keepdim=True).expand_as(images)
    else:
        replacement = _blurred(images, ph)
    return torch.where(masks, replacement, images)
