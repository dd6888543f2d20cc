"""Compact token-grid blobs: little-endian uint16 when K <= 65536, else int32, raster order."""

from __future__ import annotations

import numpy as np
import torch

from ..core.errors import CortexError


def pack_tokens(grid: torch.Tensor | np.ndarray, n_embed: int) -> bytes:
    """A token grid (m x m or m*m) -> bytes; CortexError for an id outside the codebook 0..K-1."""
    arr = grid.detach().cpu().numpy() if isinstance(grid, torch.Tensor) else np.asarray(grid)
    if arr.size and (arr.min() < 0 or arr.max() >= n_embed):
        bad = int(arr.min()) if arr.min() < 0 else int(arr.max())
        raise CortexError(f"token id {bad} is outside the codebook 0..{n_embed - 1}")
    dtype = "<u2" if n_embed <= 65536 else "<i4"
    return np.ascontiguousarray(arr.reshape(-1), dtype=dtype).tobytes()


def unpack_tokens(blob: bytes, n_embed: int, grid: int) -> torch.Tensor:
    """bytes -> LongTensor (m x m)."""
    dtype = "<u2" if n_embed <= 65536 else "<i4"
    arr = np.frombuffer(blob, dtype=dtype)
    if arr.size != grid * grid:
        raise CortexError(f"token blob holds {arr.size} tokens, expected {grid * grid} (a {grid}x{grid} grid); "
                          "was it written by another model?")
    return torch.from_numpy(arr.astype(np.int64)).reshape(grid, grid)
