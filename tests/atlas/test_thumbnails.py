"""atlas/thumbnails.py: content-named pictures, each grid decoded once per flush, nothing redrawn that exists."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cortex_cli.models import registry as model_registry
from cortex_cli.atlas.thumbnails import Picture, Thumbnails, decoder_identity, token_tile
from cortex_cli.backends.base import to_pil
from cortex_cli.images.token_blobs import pack_tokens, unpack_tokens


class Counting:
    """The tiny model's decoder, counting the grids it decodes."""

    def __init__(self, vqgm):
        self.vqgm, self.grids = vqgm, 0

    def decode_tokens(self, tokens, batch_size=32):
        self.grids += len(tokens)
        return self.vqgm.decode_tokens(tokens)


def test_pictures_are_named_by_content_and_drawn_once(tiny_model, tmp_path):
    vqgm = Counting(model_registry.load_model(tiny_model))
    loads = []
    thumbs = Thumbnails(tmp_path, tiny_model, lambda: loads.append(1) or vqgm, decoder_identity(tiny_model), batch_size=1)
    grid = pack_tokens(torch.randint(0, 64, (256,), generator=torch.Generator().manual_seed(0)), 64)
    whole, crop = Picture(grid, "image"), Picture(grid, "crop", cells=(17,), side=72)
    boxes, tile = Picture(grid, "boxes", cells=(0, 255), side=128), Picture(token_tile(5, tiny_model), "image")
    names = [thumbs.request(p) for p in (whole, crop, boxes, tile, whole)]
    assert len(set(names)) == 4 and names[0] == names[4] and all(n.startswith("img/") and n.endswith(".png") for n in names)
    assert thumbs.name(Picture(grid, "crop", cells=(18,), side=72)) != names[1]
    assert loads == []  # nothing decoded before a flush
    assert thumbs.flush() == 4 and vqgm.grids == 2  # two distinct grids, four pictures
    decoded = np.asarray(to_pil(vqgm.vqgm.decode_tokens(unpack_tokens(grid, 64, 16)[None]))[0])
    assert np.array_equal(np.asarray(Image.open(tmp_path / names[0])), decoded)  # the whole image, as decoded
    assert Image.open(tmp_path / names[1]).size[0] >= 72 and Image.open(tmp_path / names[2]).size == (128, 128)
    assert Image.open(tmp_path / names[3]).size == (64, 64)  # a token tile: the grid of one codebook entry, native size
    assert unpack_tokens(token_tile(5, tiny_model), 64, 16).unique().tolist() == [5]
    # a second site object over the same directory finds every file: nothing queued, nothing decoded
    again = Thumbnails(tmp_path, tiny_model, lambda: pytest.fail("decoded again"), decoder_identity(tiny_model))
    assert [again.request(p) for p in (whole, crop, boxes, tile)] == names[:4] and again.flush() == 0
    # another decoder identity (a retrained checkpoint) names every picture anew
    assert Thumbnails(tmp_path, tiny_model, lambda: vqgm, "other").name(whole) != names[0]
    with pytest.raises(ValueError, match="unknown picture kind"):
        thumbs.name(Picture(grid, "video"))


def test_copied_files_are_named_by_their_bytes(tiny_model, tmp_path):
    thumbs = Thumbnails(tmp_path / "site", tiny_model, lambda: None, "x")
    plot = tmp_path / "plot.PNG"
    plot.write_bytes(b"one")
    first = thumbs.copy_file(plot)
    assert first.endswith(".png") and (tmp_path / "site" / first).read_bytes() == b"one" and thumbs.written == 1
    assert thumbs.copy_file(plot) == first and thumbs.written == 1
    plot.write_bytes(b"two")
    assert thumbs.copy_file(plot) != first
    assert thumbs.copy_file(tmp_path / "missing.png") is None
