"""The atlas's pictures: token grids decoded in batches on the device, cropped or boxed, named by content.

A picture's file name is a hash of everything that draws it (the decoder, the token grid, what is
outlined, the size), so a page that did not change points at files that already exist, and a build
decodes only the grids of pictures it has never drawn.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..images.figures import draw_token_boxes
from ..models.registry import ModelInfo
from ..images.token_blobs import pack_tokens, unpack_tokens

THUMB_VERSION = 1  # bump when drawing changes, so every picture is redrawn under a new name
THUMB_DIR = "img"
KINDS = ("image", "crop", "boxes")


@dataclass(frozen=True)
class Picture:
    """How to draw one thumbnail from one token grid."""

    grid: bytes  # the packed token grid (`tokens.pack_tokens`)
    kind: str  # 'image': the whole decoded grid; 'crop': a window around cells[0], outlined; 'boxes': red boxes on cells (Figure 2)
    cells: tuple[int, ...] = ()  # raster positions (row * m + col)
    region: tuple[int, int, int, int] | None = None  # 'image': a token rectangle (r0, r1, c0, c1) to outline
    side: int = 0  # upscale (nearest, integer factor) to at least this many pixels a side; 0: native size


def token_tile(token: int, model: ModelInfo) -> bytes:
    """The grid holding `token` at every position (the codebook entry on its own), packed."""
    return pack_tokens(np.full(model.grid * model.grid, int(token), dtype=np.int64), model.n_embed)


def decoder_identity(model: ModelInfo) -> str:
    """What decoding depends on: the model's config and checkpoint (path, size, modification time)."""
    parts = [model.name, str(model.n_embed), str(model.grid), str(model.image_size)]
    for path in (model.config_path, model.ckpt_path):
        try:
            st = os.stat(path)
            parts.append(f"{path}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append(path)
    return "|".join(parts)


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """Images in [-1, 1] (B x 3 x H x W) -> uint8 (B x H x W x 3) on the CPU."""
    return ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _upscale(image: Image.Image, side: int) -> tuple[Image.Image, int]:
    scale = max(1, math.ceil(side / min(image.size))) if side else 1
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    return image, scale


class Thumbnails:
    """Content-named pictures under `<site>/img/`: `request` names one (queued if its file is missing), `flush` draws the queue.

    Args:
        root: the site directory.
        model: the model whose grids are drawn.
        decoder: returns the loaded model (anything with `decode_tokens(tokens, batch_size)`); called
            only when a picture must be drawn.
        identity: `decoder_identity(model)`.
        context: tokens of context on each side of a crop's cell (2: a 5 x 5 token window).
        batch_size: grids decoded per batch on the device.
        device: where to decode.
    """

    def __init__(self, root: Path, model: ModelInfo, decoder: Callable[[], object], identity: str, *, context: int = 2,
                 batch_size: int = 32, device: torch.device | str = "cpu"):
        self.root = Path(root)
        self.model = model
        self.decoder = decoder
        self.identity = identity
        self.context = context
        self.batch_size = max(1, int(batch_size))
        self.device = device
        self.pending: dict[str, Picture] = {}
        self.seen: set[str] | None = None  # when a set: every name requested, so a page knows its pictures
        self.written = 0
        self.decoded = 0

    def name(self, picture: Picture) -> str:
        """The picture's path relative to the site: img/<hash of what draws it>.png."""
        if picture.kind not in KINDS:
            raise ValueError(f"unknown picture kind {picture.kind!r}")
        head = f"{THUMB_VERSION}|{self.identity}|{picture.kind}|{picture.cells}|{picture.region}|{picture.side}|{self.context}|"
        digest = hashlib.sha256(head.encode() + picture.grid).hexdigest()[:24]
        return f"{THUMB_DIR}/{digest}.png"

    def request(self, picture: Picture) -> str:
        """The picture's site path; queued for the next `flush` unless its file exists."""
        name = self.name(picture)
        if self.seen is not None:
            self.seen.add(name)
        if name not in self.pending and not (self.root / name).is_file():
            self.pending[name] = picture
        return name

    def copy_file(self, source: str | Path) -> str | None:
        """A copy of an existing file (an evaluation's plot) under img/, named by its bytes; None if it is unreadable."""
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        name = f"{THUMB_DIR}/{hashlib.sha256(data).hexdigest()[:24]}{path.suffix.lower() or '.png'}"
        if self.seen is not None:
            self.seen.add(name)
        target = self.root / name
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".tmp")
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)
            self.written += 1
        return name

    def flush(self) -> int:
        """Decode the queued pictures' distinct grids in batches and write every queued picture; how many were written."""
        if not self.pending:
            return 0
        by_grid: dict[bytes, list[tuple[str, Picture]]] = {}
        for name, picture in self.pending.items():
            by_grid.setdefault(picture.grid, []).append((name, picture))
        grids = list(by_grid)
        vqgm = self.decoder()
        m, k = self.model.grid, self.model.n_embed
        (self.root / THUMB_DIR).mkdir(parents=True, exist_ok=True)
        written = 0
        for start in range(0, len(grids), self.batch_size):
            chunk = grids[start:start + self.batch_size]
            tokens = torch.stack([unpack_tokens(g, k, m) for g in chunk])
            with torch.no_grad():
                pixels = _to_uint8(vqgm.decode_tokens(tokens.to(self.device), batch_size=self.batch_size))
            self.decoded += len(chunk)
            for grid, array in zip(chunk, pixels):
                image = Image.fromarray(array)
                for name, picture in by_grid[grid]:
                    self._save(self._draw(image, picture), self.root / name)
                    written += 1
        self.pending.clear()
        self.written += written
        return written

    def _draw(self, image: Image.Image, picture: Picture) -> Image.Image:
        m = self.model.grid
        if picture.kind == "boxes":
            scale = max(1, math.ceil(picture.side / image.width)) if picture.side else 1
            return draw_token_boxes(image, list(picture.cells), m, scale=scale)
        if picture.kind == "crop":
            return self._crop(image, picture.cells[0], picture.side)
        out, scale = _upscale(image, picture.side)
        if picture.region is not None:
            r0, r1, c0, c1 = picture.region
            cell = out.width / m
            _outline(out, (round(c0 * cell), round(r0 * cell), round(c1 * cell) - 1, round(r1 * cell) - 1), max(1, scale // 2))
        return out

    def _crop(self, image: Image.Image, position: int, side: int) -> Image.Image:
        """A (2 context + 1)-token window around the cell (shifted to stay inside the grid), the cell outlined."""
        m = self.model.grid
        row, col = divmod(int(position), m)
        window = min(2 * self.context + 1, m)
        r0 = min(max(row - self.context, 0), m - window)
        c0 = min(max(col - self.context, 0), m - window)
        cell = image.width / m
        box = (round(c0 * cell), round(r0 * cell), round((c0 + window) * cell), round((r0 + window) * cell))
        out, scale = _upscale(image.crop(box), side)
        px = cell * scale
        x0, y0 = round((col - c0) * px), round((row - r0) * px)
        x1, y1 = round((col - c0 + 1) * px) - 1, round((row - r0 + 1) * px) - 1
        width = max(1, round(px / 8))
        # drawn just outside the cell, so the token's own pixels stay visible
        pad = width + 1
        _outline(out, (x0 - pad, y0 - pad, x1 + pad, y1 + pad), width)
        return out

    @staticmethod
    def _save(image: Image.Image, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        image.save(tmp, format="PNG")
        os.replace(tmp, path)


def _outline(image: Image.Image, box: tuple[int, int, int, int], width: int) -> None:
    """A white rectangle edged in black, visible on any background."""
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = box
    draw.rectangle((x0 - 1, y0 - 1, x1 + 1, y1 + 1), outline=(0, 0, 0), width=width + 2)
    draw.rectangle((x0, y0, x1, y1), outline=(255, 255, 255), width=width)


__all__ = ["Picture", "THUMB_DIR", "Thumbnails", "decoder_identity", "token_tile"]
