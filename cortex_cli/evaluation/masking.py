"""Masking token positions (the paper's image- and concept-level tests): in pixels, or in token space.

A token at grid position (r, c) of an m x m grid covers the (H/m) x (W/m) pixel patch whose top-left
corner is (r*H/m, c*W/m): the VQGAN's receptive field is wider, but this is the patch the authors
blacked out. Positions are flat raster indices `r * m + c`.

Fills: 'black' (the paper's), 'mean' and 'blur' replace the patches' pixels, so the judges see
images the generator never makes. 'tokens' masks in token space instead and decodes the whole grid
with the model's VQGAN, so the judged image is one the decoder can produce. Its rule
(`fill_tokens`), deterministic and order-free:

- a position is *known* when it is unmasked or was filled in an earlier round;
- each round, every masked position with at least one known 8-neighbour takes the most frequent
  token among its known 8-neighbours (ties: the smaller token id); positions filled in the same
  round do not see each other (a synchronous update), so the grid fills from the masks' borders
  inward, and a position with no known neighbour waits a round;
- a grid with every position masked has nothing to spread: it takes one `fallback` token everywhere
  (the evaluations pass `background_token` of their test grids: the most frequent token pooled over
  all evaluated images and classes, ties the smaller id, the same for every selection).

Unmasked positions keep their token; an image with no masked position is returned untouched (not
re-decoded).

Insertion (`insertion_images`) starts from the fully masked image and puts back kept positions. With a
pixel fill that is the fill everywhere but the kept patches. With the token fill the start is the
fully masked grid's fill (the `fallback` token everywhere) with the kept tokens put back, decoded; the
neighbour rule is not applied there, since with most positions masked it would grow the few kept
tokens over the whole grid and turn insertion into a test of how the kept tokens tile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..core.errors import CortexError

PIXEL_FILLS = ("black", "mean", "blur")
TOKEN_FILL = "tokens"
FILLS = (*PIXEL_FILLS, TOKEN_FILL)
# the 8-neighbourhood of a position as (row, column) offsets
NEIGHBOURS = tuple((dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0))


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
    if fill not in PIXEL_FILLS:
        hint = " (the token fill needs the grids: use mask_images)" if fill == TOKEN_FILL else ""
        raise CortexError(f"unknown pixel fill {fill!r}; choose from {', '.join(PIXEL_FILLS)}{hint}")
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


def background_token(tokens: torch.Tensor) -> int:
    """The most frequent token over all given grids (ties: the smaller id): `fill_tokens`' fallback."""
    flat = torch.as_tensor(tokens).reshape(-1).long().cpu()
    if flat.numel() == 0:
        raise CortexError("no token grids to take a background token from")
    return int(torch.bincount(flat).argmax())  # argmax returns the first (smallest) id among ties


def _shifted(values: torch.Tensor, dr: int, dc: int, pad) -> torch.Tensor:
    """values[:, r + dr, c + dc] at (r, c), `pad` where that lies outside the grid."""
    m = values.shape[-1]
    out = torch.full_like(values, pad)
    rs, rd = slice(max(dr, 0), m + min(dr, 0)), slice(max(-dr, 0), m + min(-dr, 0))
    cs, cd = slice(max(dc, 0), m + min(dc, 0)), slice(max(-dc, 0), m + min(-dc, 0))
    out[:, rd, cd] = values[:, rs, cs]
    return out


def fill_tokens(tokens: torch.Tensor, positions: Sequence[Sequence[int] | torch.Tensor], fallback: int | None = None) -> torch.Tensor:
    """Token grids with each image's masked positions refilled by the module's neighbour rule.

    Args:
        tokens: (B, m, m) token ids.
        positions: one sequence of flat masked positions per grid (may be empty).
        fallback: the token of a grid whose every position is masked (required only then).

    Returns:
        (B, m, m) long, on the grids' device: equal to `tokens` at unmasked positions.
    """
    tokens = torch.as_tensor(tokens)
    if tokens.ndim != 3 or tokens.shape[1] != tokens.shape[2]:
        raise CortexError(f"token grids must be (B, m, m); got shape {tuple(tokens.shape)}")
    if len(positions) != tokens.shape[0]:
        raise CortexError(f"{len(positions)} position lists for {tokens.shape[0]} token grids")
    grid = tokens.shape[-1]
    values = tokens.long().cpu().clone()
    masked = torch.stack([token_mask(p, grid) for p in positions]) if len(positions) else torch.zeros(0, grid, grid, dtype=torch.bool)
    full = masked.flatten(1).all(1)
    if full.any():
        if fallback is None:
            raise CortexError("every position of a token grid is masked and no fallback token was given")
        values[full] = int(fallback)
        masked[full] = False
    known = ~masked
    while masked.any():
        neighbour = torch.stack([_shifted(values, dr, dc, -1) for dr, dc in NEIGHBOURS])  # (8, B, m, m)
        valid = torch.stack([_shifted(known, dr, dc, False) for dr, dc in NEIGHBOURS])
        # votes[j] = how many known neighbours hold neighbour j's token (j itself known)
        votes = ((neighbour[:, None] == neighbour[None]) & valid[:, None] & valid[None]).sum(0)
        # most votes first, then the smaller token id; unknown neighbours never win
        score = torch.where(valid, votes * (values.max() + 2) - neighbour, torch.full_like(votes, -1))
        best = neighbour.gather(0, score.argmax(0, keepdim=True))[0]
        ready = masked & valid.any(0)
        values = torch.where(ready, best, values)
        masked &= ~ready
        known |= ready
    return values.to(tokens.device)


@dataclass(frozen=True)
class Masking:
    """What a run masks and how: its images, their grid side and the fill; for the token fill also the images'
    token grids, the decoder and the token of a fully masked grid (`masking_of` picks `background_token`)."""

    images: torch.Tensor  # (B, 3, H, W) in [-1, 1]; with the token fill, the decoded `tokens`
    grid: int  # m, the token grid side
    fill: str = "black"  # one of FILLS
    tokens: torch.Tensor | None = None  # (B, m, m): the token fill only
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None  # token grids -> images in [-1, 1]: the token fill only
    fallback: int | None = None  # the token of a grid whose every position is masked: the token fill only

    def _token_grids(self, positions: Sequence) -> torch.Tensor:
        """The token fill's grids, checked: a decoder, one position list and one grid per image."""
        if self.tokens is None or self.decode is None:
            raise CortexError("the token fill needs the images' token grids and the model's decoder")
        if len(positions) != self.images.shape[0] or self.tokens.shape[0] != self.images.shape[0]:
            raise CortexError(f"{len(positions)} position lists and {self.tokens.shape[0]} token grids for {self.images.shape[0]} images")
        return self.tokens

    def _decoded_where(self, changed: torch.Tensor, grids_of: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The images with the `changed` ones replaced by their decoded `grids_of(indices)`; the others untouched (not decoded)."""
        images = self.images
        out = images.clone()
        if changed.any():
            idx = changed.nonzero().flatten()
            out[idx.to(images.device)] = self.decode(grids_of(idx)).to(images.device, images.dtype)
        return out


def masking_of(images: torch.Tensor, tokens: torch.Tensor, grid: int, fill: str,
               decode: Callable[[torch.Tensor], torch.Tensor]) -> Masking:
    """How an evaluation masks its test images: the token fill's fully masked grid is their `background_token`."""
    return Masking(images, grid, fill, tokens, decode, background_token(tokens) if fill == TOKEN_FILL else None)


def mask_images(masking: Masking, positions: Sequence[Sequence[int] | torch.Tensor]) -> torch.Tensor:
    """Copies of the images with each image's token positions masked by the fill: in pixels, or in token space.

    Args:
        masking: the images and the fill; 'tokens' refills the grids (`fill_tokens`) and decodes them.
        positions: one sequence of flat token positions per image (may be empty).

    Returns:
        (B, 3, H, W); an image with no masked position is returned untouched.
    """
    if masking.fill != TOKEN_FILL:
        return mask_patches(masking.images, positions, masking.grid, masking.fill)
    tokens = masking._token_grids(positions)
    changed = torch.tensor([len(_as_positions(p, masking.grid)) > 0 for p in positions])
    return masking._decoded_where(changed, lambda idx: fill_tokens(tokens[idx], [positions[int(i)] for i in idx], masking.fallback))


def insertion_images(masking: Masking, kept: Sequence[Sequence[int] | torch.Tensor]) -> torch.Tensor:
    """Fully masked copies of the images with only each image's `kept` positions put back (insertion, RISE).

    Pixel fills: every other patch filled (`mask_patches` of the complement). The token fill: a grid of the
    `fallback` token with the kept positions' tokens, decoded. An image that keeps every position is returned
    untouched.
    """
    grid = masking.grid
    keep = (torch.stack([token_mask(k, grid) for k in kept]) if len(kept)
            else torch.zeros(0, grid, grid, dtype=torch.bool))  # (B, m, m): True where the image keeps its token
    if masking.fill != TOKEN_FILL:
        everything = torch.arange(grid * grid)
        return mask_patches(masking.images, [everything[~k.flatten()] for k in keep], grid, masking.fill)
    if masking.fallback is None:
        raise CortexError("token-fill insertion needs the images' token grids, the model's decoder and the fallback token")
    tokens = masking._token_grids(kept)
    grids = torch.where(keep, tokens.long().cpu(), int(masking.fallback))
    return masking._decoded_where(~keep.flatten(1).all(1), lambda idx: grids[idx].to(tokens.device))
