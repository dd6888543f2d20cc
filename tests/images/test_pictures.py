"""images/pictures.py: any picture as a path (PNG text kept), and a token's thumbnail decoded from its own grid."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from cortex_cli.core.errors import CortexError
from cortex_cli.images.pictures import picture_path, picture_source, token_thumbnails
from cortex_cli.models import registry as model_registry


def test_a_path_passes_through_and_a_pil_image_keeps_its_png_text(tmp_path):
    given = tmp_path / "a.png"
    with picture_path(given) as path:
        assert path == given
    image = Image.new("RGB", (8, 8), (10, 20, 30))
    image.text = {"cortex:tokens": "{\"grid\": 2}"}  # what PIL exposes for a PNG read from disk
    with picture_path(image) as path:
        reread = Image.open(path)
        assert reread.text["cortex:tokens"] == "{\"grid\": 2}" and reread.getpixel((0, 0)) == (10, 20, 30)
        kept = path
    assert not kept.exists()  # the temporary PNG lives as long as the context


def test_a_stored_image_id_passes_as_it_is_and_anything_else_becomes_a_path(tmp_path):
    with picture_source(7) as source:
        assert source == 7
    given = tmp_path / "a.png"
    with picture_source(given) as source:
        assert source == given
    with picture_source(Image.new("RGB", (4, 4))) as source:
        assert isinstance(source, type(given)) and source.is_file()
    with pytest.raises(CortexError, match="a path, a PIL image"):
        with picture_source(True):  # a bool is no image id
            pass


def test_a_tensor_in_minus_one_one_becomes_its_pixels_and_a_bad_shape_is_one_line():
    tensor = torch.full((3, 4, 4), -1.0)
    tensor[0] = 1.0
    with picture_path(tensor) as path:
        assert Image.open(path).getpixel((0, 0)) == (255, 0, 0)
    with pytest.raises(CortexError, match=r"must be 3 x H x W .*got shape \(1, 4, 4\)"):
        with picture_path(torch.zeros(1, 4, 4)):
            pass
    with pytest.raises(CortexError, match="got int"):
        with picture_path(3):
            pass


def test_a_thumbnail_is_the_decoded_grid_of_one_token(tiny_model):
    draw = token_thumbnails(tiny_model, "cpu")
    vqgm = model_registry.load_model(tiny_model)
    expected = vqgm.decode_tokens(torch.full((1, tiny_model.grid, tiny_model.grid), 5, dtype=torch.long))
    got = torch.tensor(list(draw(5).getdata()), dtype=torch.float32)
    want = ((expected[0].clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).reshape(-1, 3)
    assert draw(5).size == (tiny_model.image_size, tiny_model.image_size)
    assert (got - want).abs().max() <= 1
    assert list(draw(5).getdata()) != list(draw(6).getdata())
