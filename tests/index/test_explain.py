"""explain.py (`cortex explain`, `cortex show`): the top tokens of one image, computed or read from the index, and its figures."""

from __future__ import annotations

import pytest
from PIL import Image

from cortex_cli.models import registry as model_registry
from cortex_cli.attribution import SaliencySettings
from cortex_cli.backends.base import from_pil, to_pil
from cortex_cli.core.errors import CortexError
from cortex_cli.index.explain import explain_png, show_image, show_picture, show_token
from cortex_cli.images.generation import image_tokens
from cortex_cli.index.build import index_class
from cortex_cli.images.pngmeta import save_png

from index_helpers import ToyExtractor, register_toy, store_random_images

SETTINGS = SaliencySettings(samples=2, top_n=6)
GRADIENT = SaliencySettings(method="gradient", top_n=6)  # no noise: the same map whatever the image's key


@pytest.fixture
def images(store, tiny_model):
    info = register_toy(store, tiny_model)
    cls = model_registry.classes(store, tiny_model)[1]
    return info, cls, store_random_images(store, tiny_model, cls, 2, vocab=30)


def test_an_image_explained_on_the_fly_equals_its_indexed_map(store, tiny_model, images, tmp_path):
    info, cls, ids = images
    ext = ToyExtractor()
    computed = show_image(store, tiny_model, ids[0], top_n=4, settings=SETTINGS, extractor=ext, out=tmp_path / "a.png")
    assert (computed.tsv_from, computed.class_id, computed.target, computed.extractor) == ("computed", 1, "stored class", "ce")
    grid = image_tokens(store, tiny_model, [ids[0]])[0].reshape(-1)
    assert [t.rank for t in computed.top] == [1, 2, 3, 4]
    assert [t.token for t in computed.top] == [int(grid[t.position]) for t in computed.top]
    assert all(t.position == 16 * t.row + t.col for t in computed.top)
    assert [t.tsv for t in computed.top] == sorted((t.tsv for t in computed.top), reverse=True)
    assert Image.open(computed.out).size[0] >= 256  # upscaled figure
    index_class(store, tiny_model, info, cls, n_images=2, settings=SETTINGS, extractor=ext)
    indexed = show_image(store, tiny_model, ids[0], top_n=4)
    assert indexed.tsv_from.startswith("index run ") and indexed.out is None
    assert [(t.position, t.token) for t in indexed.top] == [(t.position, t.token) for t in computed.top]  # same key, same noise
    assert [t.tsv for t in indexed.top] == pytest.approx([t.tsv for t in computed.top], rel=1e-5)


def test_a_png_cortex_wrote_is_explained_from_its_metadata(store, tiny_model, images, tmp_path):
    _, _, ids = images
    ext = ToyExtractor()
    shown = show_image(store, tiny_model, ids[1], top_n=3, settings=GRADIENT, extractor=ext)
    vqgm = model_registry.load_model(tiny_model)
    tokens = image_tokens(store, tiny_model, [ids[1]])
    picture = to_pil(vqgm.decode_tokens(tokens))[0]
    save_png(picture, tmp_path / "generated.png", tokens[0], "tiny", {"class_id": 1})  # as `cortex generate --out` writes
    got = explain_png(store, tmp_path / "generated.png", top_n=3, settings=GRADIENT, extractor=ext)
    assert (got.model, got.class_id, got.target, got.tokens_from) == ("tiny", 1, "PNG metadata", "PNG metadata")
    assert [(t.position, t.token) for t in got.top] == [(t.position, t.token) for t in shown.top]
    plain = tmp_path / "plain.png"
    picture.save(plain)  # no cortex metadata: the VQGAN encodes it and the extractor's prediction is explained
    other = explain_png(store, plain, model_name="tiny", top_n=2, settings=GRADIENT, extractor=ext, out=tmp_path / "other.png")
    assert (other.tokens_from, other.target) == ("VQGAN encoding", "predicted by the extractor") and len(other.top) == 2
    encoded = vqgm.encode_images(from_pil([picture], 64))
    assert other.class_id == int(ext(vqgm.embed(encoded).float()).argmax())
    assert Image.open(other.out).size[0] >= 256
    with pytest.raises(CortexError, match="--top-n must be >= 1"):
        explain_png(store, plain, model_name="tiny", top_n=0, extractor=ext)
    with pytest.raises(CortexError, match="image 999 is not a stored image of model 'tiny'"):
        show_image(store, tiny_model, 999)


def test_a_token_figure_boxes_the_images_where_it_is_salient(store, tiny_model, images, tmp_path):
    info, cls, ids = images
    index_class(store, tiny_model, info, cls, n_images=2, settings=SETTINGS, extractor=ToyExtractor())
    top = show_image(store, tiny_model, ids[0], top_n=1).top[0]
    fig = show_token(store, tiny_model, cls, top.token, tmp_path / "token.png")
    assert ids[0] in fig.image_ids and fig.images_with_token >= 1 and fig.token == top.token
    assert Image.open(fig.out).size[0] >= 256
    never = next(t for t in range(64) if t not in {int(x) for x in image_tokens(store, tiny_model, ids).flatten()})
    with pytest.raises(CortexError, match=f"token {never} is not among the top-6 tokens"):
        show_token(store, tiny_model, cls, never, tmp_path / "x.png")
    with pytest.raises(CortexError, match="outside model 'tiny'"):
        show_token(store, tiny_model, cls, 64, tmp_path / "x.png")


def test_show_picture_reads_a_stored_id_or_a_png_in_its_own_model(store, tiny_model, images, tmp_path):
    info, cls, ids = images
    index_class(store, tiny_model, info, cls, n_images=2, settings=SETTINGS, extractor=ToyExtractor())
    by_id = show_picture(store, ids[0], model_name="tiny", top_n=4, out=tmp_path / "a.png")
    assert by_id.top == show_image(store, tiny_model, ids[0], top_n=4).top and by_id.tsv_from.startswith("index run ")
    assert Image.open(by_id.out).size[0] >= 256
    named = show_picture(store, ids[0], model_name="tiny", top_n=4, target=str(cls.class_id))  # a name or id is resolved
    assert (named.target, named.top) == ("given class", by_id.top)
    tokens = image_tokens(store, tiny_model, [ids[0]])
    save_png(to_pil(model_registry.load_model(tiny_model).decode_tokens(tokens))[0], tmp_path / "g.png", tokens[0], "tiny", {"class_id": 1})
    with pytest.raises(CortexError, match="--top-n must be >= 1"):
        show_picture(store, tmp_path / "g.png", top_n=0)
    with pytest.raises(CortexError, match="no such bird"):  # resolved in the PNG's model (tiny), not the default one
        show_picture(store, tmp_path / "g.png", target="no such bird")
