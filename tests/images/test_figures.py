"""Figures: boxes land on the right grid cells; grids tile in reading order."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cortex_cli.images.figures import RED, draw_token_boxes, image_grid


def test_boxes_outline_exactly_the_given_cells():
    img = Image.new("RGB", (64, 64), (0, 0, 0))
    out = draw_token_boxes(img, [0, (2, 3), 15], grid=4, width=1)
    arr = np.asarray(out)
    red = np.all(arr == RED, axis=-1)
    # cell (0,0) spans pixels 0..15: its border is red, its inside is not
    assert red[0, 0:16].all() and red[0:16, 15].all() and not red[1:15, 1:15].any()
    # cell (2,3): rows 32..47, cols 48..63
    assert red[32, 48:64].all() and red[47, 48:64].all() and not red[33:47, 49:63].any()
    # cell 15 = (3,3) and untouched cell (1,1)
    assert red[48:64, 48].all()
    assert not red[17:31, 17:31].any()
    assert img.getpixel((0, 0)) == (0, 0, 0)  # the input is not modified


def test_scale_and_default_width():
    out = draw_token_boxes(Image.new("RGB", (16, 16)), [5], grid=4, scale=4)
    assert out.size == (64, 64)
    arr = np.asarray(out)
    assert np.all(arr[16:18, 16:32] == RED)  # width 2 = cell 16 px / 8
    with pytest.raises(ValueError, match="outside"):
        draw_token_boxes(Image.new("RGB", (16, 16)), [16], grid=4)


def test_image_grid_layout_and_labels():
    tiles = [Image.new("RGB", (10, 10), (i * 40, 0, 0)) for i in range(5)]
    grid = image_grid(tiles, ncols=3, pad=2)
    assert grid.size == (2 + 3 * 12, 2 + 2 * 12)
    assert grid.getpixel((2 + 12 + 5, 2 + 5)) == (40, 0, 0)  # tile 1 at row 0, col 1
    assert grid.getpixel((2 + 12 + 5, 2 + 12 + 5)) == (160, 0, 0)  # tile 4 at row 1, col 1
    labelled = image_grid(tiles, ncols=3, labels=[f"#{i}" for i in range(5)], pad=2)
    assert labelled.height > grid.height
    with pytest.raises(ValueError):
        image_grid(tiles, ncols=2, labels=["a"])
