import numpy as np
import pytest
import torch
from PIL import Image

from cortex_cli.core.errors import CortexError
from cortex_cli.images.pngmeta import KEY_TOKENS, read_png, save_png


def _picture(seed=0, size=32):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


@pytest.mark.parametrize("n_embed", [64, 16384, 70000])
def test_tokens_model_and_meta_round_trip_exactly(tmp_path, n_embed):
    tokens = torch.randint(0, n_embed, (16, 16))
    tokens[0, 0] = n_embed - 1  # the largest id survives the packing
    image = _picture()
    path = save_png(image, tmp_path / "sub" / "a.png", tokens, "cin", {"class_id": 11, "seed": 3}, n_embed=n_embed)
    got = read_png(path)
    assert got.tokens.dtype == torch.long and torch.equal(got.tokens, tokens)
    assert got.model_name == "cin" and got.n_embed == n_embed
    assert got.meta == {"class_id": 11, "seed": 3}
    assert np.array_equal(np.asarray(got.image), np.asarray(image))  # pixels are lossless


def test_batched_single_grid_and_plain_picture(tmp_path):
    tokens = torch.arange(64).reshape(1, 8, 8)
    got = read_png(save_png(_picture(), tmp_path / "b.png", tokens, "tiny"))
    assert torch.equal(got.tokens, tokens[0]) and got.meta == {}
    _picture().save(tmp_path / "plain.png")
    plain = read_png(tmp_path / "plain.png")
    assert plain.tokens is None and plain.model_name is None and plain.meta == {}


def test_rejects_non_square_grid(tmp_path):
    with pytest.raises(CortexError, match="square token grid"):
        save_png(_picture(), tmp_path / "c.png", torch.zeros(4, 8, dtype=torch.long), "tiny")


def test_unwritable_path_is_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CortexError, match="cannot write PNG") as info:
        save_png(_picture(), blocker / "d.png", None, None)
    assert "\n" not in str(info.value)


def test_missing_non_image_truncated_and_corrupt(tmp_path):
    with pytest.raises(CortexError, match="does not exist"):
        read_png(tmp_path / "nope.png")
    (tmp_path / "text.png").write_text("not a picture")
    with pytest.raises(CortexError, match="not an image"):
        read_png(tmp_path / "text.png")
    good = save_png(_picture(size=64), tmp_path / "good.png", torch.zeros(4, 4, dtype=torch.long), "tiny")
    data = good.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(CortexError, match="damaged or truncated") as info:
        read_png(tmp_path / "cut.png")
    assert "\n" not in str(info.value)
    from PIL import PngImagePlugin

    info_chunks = PngImagePlugin.PngInfo()
    info_chunks.add_text(KEY_TOKENS, '{"grid": 4, "dtype": "<u2", "data": "AAAA"}')
    _picture().save(tmp_path / "bad.png", pnginfo=info_chunks)
    with pytest.raises(CortexError, match="corrupt cortex:tokens"):
        read_png(tmp_path / "bad.png")
