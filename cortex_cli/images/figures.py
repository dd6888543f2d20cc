"""PNG figures drawn with Pillow: token boxes on an image (paper Fig. 2), image grids (Fig. 5).

Each function is independent and returns a new PIL image; nothing here knows about the store.
"""

from __future__ import annotations

from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

RED = (255, 0, 0)


def _cell(position: int | tuple[int, int], grid: int) -> tuple[int, int]:
    if isinstance(position, tuple):
        r, c = position
    else:
        r, c = divmod(int(position), grid)
    if not (0 <= r < grid and 0 <= c < grid):
        raise ValueError(f"position {position} is outside a {grid}x{grid} grid")
    return r, c


def draw_token_boxes(
    image: Image.Image,
    positions: Sequence[int | tuple[int, int]],
    grid: int,
    color: tuple[int, int, int] = RED,
    width: int | None = None,
    scale: int = 1,
) -> Image.Image:
    """Outline grid cells of an image (the paper's red token boxes, Figure 2).

    Args:
        image: the decoded image; it is split into grid x grid equal cells.
        positions: cells as raster index (row * grid + col) or (row, col).
        grid: m, the token grid side.
        color: RGB outline colour.
        width: line width in output pixels (default: about 1/8 of a cell, at least 1).
        scale: upscale the image by this integer factor first (nearest), so small boxes stay visible.

    Returns:
        A new RGB image with the boxes drawn.
    """
    out = image.convert("RGB")
    if scale > 1:
        out = out.resize((out.width * scale, out.height * scale), Image.NEAREST)
    cw, ch = out.width / grid, out.height / grid
    line = width if width is not None else max(1, round(min(cw, ch) / 8))
    draw = ImageDraw.Draw(out)
    for position in positions:
        r, c = _cell(position, grid)
        box = (round(c * cw), round(r * ch), round((c + 1) * cw) - 1, round((r + 1) * ch) - 1)
        draw.rectangle(box, outline=color, width=line)
    return out


def image_grid(
    images: Sequence[Image.Image],
    ncols: int,
    labels: Sequence[str] | None = None,
    pad: int = 4,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """Tile images (all resized to the first one's size) into rows of `ncols`, with optional captions.

    Args:
        images: the tiles, in reading order.
        ncols: tiles per row.
        labels: one caption per tile, drawn under it (default: none).
        pad: pixels between tiles and around the border.
        background: RGB fill.

    Returns:
        One RGB image.
    """
    if not images:
        raise ValueError("image_grid needs at least one image")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{len(labels)} labels for {len(images)} images")
    ncols = max(1, min(ncols, len(images)))
    nrows = -(-len(images) // ncols)
    w, h = images[0].size
    font = ImageFont.load_default()
    text_h = 0
    if labels is not None:
        text_h = max(ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), lab or " ", font=font)[3] for lab in labels) + pad
    canvas = Image.new("RGB", (pad + ncols * (w + pad), pad + nrows * (h + text_h + pad)), background)
    draw = ImageDraw.Draw(canvas)
    for i, img in enumerate(images):
        r, c = divmod(i, ncols)
        x, y = pad + c * (w + pad), pad + r * (h + text_h + pad)
        tile = img.convert("RGB")
        canvas.paste(tile if tile.size == (w, h) else tile.resize((w, h), Image.NEAREST), (x, y))
        if labels is not None and labels[i]:
            draw.text((x, y + h + pad // 2), labels[i], fill=(0, 0, 0), font=font)
    return canvas


def edit_strip(
    images: Sequence[Image.Image],
    labels: Sequence[str],
    region: tuple[tuple[int, int], tuple[int, int]] | None = None,
    grid: int | None = None,
    scale: int = 2,
) -> Image.Image:
    """An edit's progress in one row: source -> snapshots -> final (paper Figure 4).

    Args:
        images: equally sized decoded images, left to right.
        labels: one caption per image (e.g. 'source', 'step 500', 'final').
        region: ((row0, row1), (col0, col1)) half-open token rectangle to outline in red on every tile.
        grid: m, the token grid side (needed with `region`).
        scale: upscale every tile by this integer factor (nearest), so small images stay legible.

    Returns:
        One RGB image.
    """
    tiles = []
    for img in images:
        tile = img.convert("RGB")
        if scale > 1:
            tile = tile.resize((tile.width * scale, tile.height * scale), Image.NEAREST)
        if region is not None and grid:
            (r0, r1), (c0, c1) = region
            cw, ch = tile.width / grid, tile.height / grid
            ImageDraw.Draw(tile).rectangle((round(c0 * cw), round(r0 * ch), round(c1 * cw) - 1, round(r1 * ch) - 1), outline=RED, width=1)
        tiles.append(tile)
    return image_grid(tiles, ncols=len(tiles), labels=labels)
