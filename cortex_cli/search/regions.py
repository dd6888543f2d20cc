"""Rectangular regions of the token grid: `4:8,4:8` (half-open rows, then columns), `R,C`, `all`."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ..core.errors import CortexError

_AXIS = re.compile(r"^\s*(-?\d+)\s*(?::\s*(-?\d+)\s*)?$")


@dataclass(frozen=True)
class Region:
    """A rectangle of token positions; `rows` and `cols` are half-open (start, stop)."""

    rows: tuple[int, int]
    cols: tuple[int, int]

    def __str__(self) -> str:
        return f"{self.rows[0]}:{self.rows[1]},{self.cols[0]}:{self.cols[1]}"

    @property
    def size(self) -> int:
        """Number of token positions."""
        return max(0, self.rows[1] - self.rows[0]) * max(0, self.cols[1] - self.cols[0])

    def check(self, grid: int) -> "Region":
        """This region if it is non-empty and inside an m x m grid, else CortexError."""
        (r0, r1), (c0, c1) = self.rows, self.cols
        if r1 <= r0 or c1 <= c0:
            raise CortexError(f"region {self} is empty; give start < stop on the {grid}x{grid} token grid, e.g. 4:8,4:8")
        if r0 < 0 or c0 < 0 or r1 > grid or c1 > grid:
            raise CortexError(
                f"region {self} is outside the {grid}x{grid} token grid; rows and columns go from 0 to {grid} (stop excluded)"
            )
        return self

    def mask(self, grid: int) -> torch.Tensor:
        """BoolTensor (m x m), True inside the region."""
        self.check(grid)
        out = torch.zeros(grid, grid, dtype=torch.bool)
        out[self.rows[0] : self.rows[1], self.cols[0] : self.cols[1]] = True
        return out

    def positions(self, grid: int) -> list[int]:
        """Raster positions (row * m + col) inside the region, in raster order."""
        self.check(grid)
        return [r * grid + c for r in range(*self.rows) for c in range(*self.cols)]


def _axis(part: str, text: str, grid: int) -> tuple[int, int]:
    match = _AXIS.match(part)
    if match is None:
        raise CortexError(
            f"region {text!r} is malformed; use R0:R1,C0:C1 (half-open rows then columns, e.g. 4:8,4:8), R,C or all "
            f"on the {grid}x{grid} grid"
        )
    start = int(match.group(1))
    stop = int(match.group(2)) if match.group(2) is not None else start + 1
    return start, stop


def parse_region(text: str, grid: int) -> Region:
    """Parse a region of an m x m token grid.

    Args:
        text: `R0:R1,C0:C1` (half-open rows then columns, `4:8,4:8` = 16 tokens), `R,C` (one token;
            each axis may also be a single index) or `all`.
        grid: the grid side m.

    Returns:
        The Region, checked to be non-empty and inside the grid.

    Raises:
        CortexError: malformed text, an empty region, or one outside the grid (one line with the value).
    """
    stripped = text.strip()
    if stripped.lower() == "all":
        return Region((0, grid), (0, grid))
    parts = stripped.split(",")
    if len(parts) != 2:
        raise CortexError(
            f"region {text!r} is malformed; use R0:R1,C0:C1 (half-open rows then columns, e.g. 4:8,4:8), R,C or all "
            f"on the {grid}x{grid} grid"
        )
    region = Region(_axis(parts[0], text, grid), _axis(parts[1], text, grid))
    return region.check(grid)
