"""tokens: the token-grid blob of `images.tokens`, edits, searches and PNG metadata (a stored format)."""

from __future__ import annotations

import base64
import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from cortex_cli.core.errors import CortexError
from cortex_cli.images.pngmeta import KEY_TOKENS, save_png
from cortex_cli.images.token_blobs import pack_tokens, unpack_tokens


def test_the_blob_is_little_endian_uint16_in_raster_order():
    """Blobs already sit in databases and PNGs: the byte layout is a contract."""
    grid = torch.tensor([[1, 2], [3, 258]])
    assert pack_tokens(grid, n_embed=512) == bytes([1, 0, 2, 0, 3, 0, 2, 1])
    assert pack_tokens(grid, n_embed=70000) == bytes([1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 2, 1, 0, 0])


@pytest.mark.parametrize(("n_embed", "largest", "width"), [(65536, 65535, 2), (65537, 65536, 4), (16384, 16383, 2), (2**20, 2**20 - 1, 4)])
def test_the_width_follows_the_codebook_size_and_every_id_round_trips(n_embed, largest, width):
    grid = torch.tensor([[0, largest], [largest - 1, 1]])
    blob = pack_tokens(grid, n_embed)
    assert len(blob) == 4 * width
    out = unpack_tokens(blob, n_embed, 2)
    assert out.dtype == torch.int64 and torch.equal(out, grid)


def test_any_int_array_packs_the_same():
    grid = torch.randint(0, 256, (16, 16), generator=torch.Generator().manual_seed(0))
    blob = pack_tokens(grid, 256)
    assert pack_tokens(grid.numpy(), 256) == blob
    assert pack_tokens(grid.to(torch.int32), 256) == blob
    assert pack_tokens(grid.reshape(-1), 256) == blob  # flat m*m is the same grid
    assert pack_tokens(grid.float().requires_grad_(), 256) == blob  # optimiser outputs: detached, cast
    if torch.cuda.is_available():
        assert pack_tokens(grid.cuda(), 256) == blob


def test_a_transposed_view_packs_in_its_own_raster_order():
    """A non-contiguous grid is packed as it reads, not as its storage lies."""
    grid = torch.arange(16).reshape(4, 4)
    assert torch.equal(unpack_tokens(pack_tokens(grid.T, 16), 16, 4), grid.T)
    assert pack_tokens(grid.T, 16) != pack_tokens(grid, 16)
    assert torch.equal(unpack_tokens(pack_tokens(grid.numpy().T, 16), 16, 4), grid.T)


def test_a_batch_packs_as_its_grids_one_after_another():
    """Searches store several grids in one blob and slice it (optimize._pack_grids)."""
    grids = torch.randint(0, 300, (3, 4, 4), generator=torch.Generator().manual_seed(1))
    blob = pack_tokens(grids, 300)
    assert blob == b"".join(pack_tokens(g, 300) for g in grids)
    size = len(blob) // 3
    assert all(torch.equal(unpack_tokens(blob[i * size:(i + 1) * size], 300, 4), grids[i]) for i in range(3))


def test_unpacked_grids_are_writable_copies():
    blob = pack_tokens(torch.zeros(4, 4, dtype=torch.long), 64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when wrapping NumPy's read-only view of the bytes
        out = unpack_tokens(blob, 64, 4)
    out[0, 0] = 5  # editing a grid in place must not touch (or fail on) the stored bytes
    assert blob == bytes(32) and out.is_contiguous()


@pytest.mark.parametrize(("blob", "grid", "message"), [
    (bytes(6), 2, "token blob holds 3 tokens, expected 4"),
    (bytes(32), 2, "token blob holds 16 tokens, expected 4"),  # another model's grid
    (b"", 16, "token blob holds 0 tokens, expected 256"),
])
def test_a_blob_of_the_wrong_size_is_refused_with_both_counts(blob, grid, message):
    with pytest.raises(CortexError, match=message) as info:
        unpack_tokens(blob, 64, grid)
    assert "\n" not in str(info.value)


def test_a_blob_read_with_the_wrong_codebook_size_is_refused_not_misread():
    """An int32 blob read as uint16 holds twice the tokens, so the count check catches the mix-up."""
    blob = pack_tokens(torch.arange(4).reshape(2, 2), 70000)
    with pytest.raises(CortexError, match="holds 8 tokens, expected 4"):
        unpack_tokens(blob, 256, 2)


def test_png_metadata_carries_the_same_bytes(tmp_path):
    """pngmeta documents its `data` as packed like `images.tokens`: a PNG's grid and the store's blob agree."""
    grid = torch.randint(0, 16384, (16, 16), generator=torch.Generator().manual_seed(2))
    path = save_png(Image.new("RGB", (8, 8)), tmp_path / "x.png", grid, "cin", n_embed=16384)
    with Image.open(path) as img:
        payload = json.loads(img.text[KEY_TOKENS])
    assert payload["dtype"] == "<u2" and base64.b64decode(payload["data"]) == pack_tokens(grid, 16384)


@pytest.mark.parametrize(("ids", "bad"), [([3, 256], 256), ([70000, 5], 70000), ([-1, 5], -1)])
def test_ids_outside_the_codebook_are_refused_not_wrapped(ids, bad):
    """uint16 would store 70000 as 4464 and -1 as 65535: a silently different grid."""
    with pytest.raises(CortexError, match=rf"^token id {bad} is outside the codebook 0\.\.255$"):
        pack_tokens(torch.tensor(ids), 256)
    assert pack_tokens(torch.tensor([0, 255]), 256) == bytes([0, 0, 255, 0])
