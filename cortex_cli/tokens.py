"""Compact token-grid blobs: little-endian uint16 when K <= 65536, else int32, raster order."""

from __future__ import annotations

import numpy as np
import torch


def pack_tokens(grid: torch.Tensor | np.ndarray, n_embed: int) -> bytes:
    """A token grid (m x m or m*m) -> bytes."""
    arr = grid.detach().cpu().numpy() if isinstance(grid, torch.Tensor) else np.asarray(grid)
    dtype = "<u2" if n_embed <= 65536 else "<i4"
    return np.ascontiguousarray(arr.reshape(-1), dtype=dtype).tobytes()


def unpack_tokens(blob: bytes, n_embed: int, grid: int) -> torch.Tensor:
    """bytes -> LongTensor (m x m)."""
    dtype = "<u2" if n_embed <= 65536 else "<i4"
    arr = np.frombuffer(blob, dtype=dtype)
    if arr.size != grid * grid:
        raise ValueError(f"token blob holds {arr.size} tokens, expected {grid * grid}")
    return torch.from_numpy(arr.astype(np.int64)).reshape(grid, grid)
