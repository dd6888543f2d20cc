"""`cortex mask` underneath: seeded random positions, position checks, the judges' P(class) and the strip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cortex_cli import Workspace
from cortex_cli.core.errors import CortexError
from cortex_cli.core.seeding import image_key
from cortex_cli.evaluation.masking import FILLS
from cortex_cli.images.generation import default_sampler
from cortex_cli.images.pngmeta import read_png
from cortex_cli.index.build import unpack_tsv
from cortex_cli.judges.masked import check_positions, mask_picture, mask_source, random_positions, stored_picture
from cortex_cli.models import registry as model_registry
from cortex_cli.store import index as index_store

from tests.index_helpers import store_random_images
from tests.search.test_edit import tiny_png

CONCEPT = "red-capped bird"
PAD = 4  # figures.image_grid's padding around and between tiles


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """A mini workspace with 2 stored random-token images of CONCEPT (seeds 0, 1), both indexed by 'ce'."""
    home = tmp_path_factory.mktemp("mask-home")
    ws = Workspace(home=home, db=f"sqlite:///{home / 'cortex.db'}", device="cpu")
    info = ws.model()
    cls = model_registry.resolve_class(ws.store, info, CONCEPT)
    ids = store_random_images(ws.store, info, cls, 2, vocab=info.n_embed)
    (indexed,) = ws.index(CONCEPT, images=2, samples=4)
    assert indexed.added == 2  # the stored images, not new ones
    yield ws, info, ids, indexed.run_id, home
    ws.close()


def _panels(path, n=3):
    """The strip's n tiles as uint8 arrays (tiles sit at PAD + i * (w + PAD) on one row)."""
    strip = np.asarray(Image.open(path).convert("RGB"))
    w = (strip.shape[1] - PAD * (n + 1)) // n
    return [strip[PAD:PAD + w, PAD + i * (w + PAD):PAD + i * (w + PAD) + w] for i in range(n)]


def _cells(positions, grid, side):
    """Bool (side, side): the pixels of the given token cells."""
    flat = np.zeros(grid * grid, dtype=bool)
    flat[list(positions)] = True
    cell = side // grid
    return np.kron(flat.reshape(grid, grid), np.ones((cell, cell), dtype=bool))


def test_random_positions_are_a_seeded_draw_keyed_by_picture_count_and_seed():
    a = random_positions(key=123, count=7, grid=16, seed=0)
    assert a == random_positions(123, 7, 16, 0)  # reproducible
    assert len(a) == len(set(a)) == 7 and a == sorted(a) and all(0 <= p < 256 for p in a)
    assert a != random_positions(123, 7, 16, 1)  # another seed
    assert a != random_positions(124, 7, 16, 0)  # another picture
    assert sorted(set(random_positions(5, 16, 4, 0))) == list(range(16))  # the whole grid: every position once


def test_check_positions_sorts_dedups_and_refuses_bad_positions_in_one_line():
    assert check_positions([17, 3, 17, 0], 16) == [0, 3, 17]
    for bad, fragment in [([], "no positions to mask"), ([3, 256], "position 256 is outside the 16x16 token grid (0..255)"),
                          ([-1], "position -1 is outside"), ([True], "position True"), ([2.0], "position 2.0"),
                          (list(range(4097)), "4097 positions to mask; at most 4096")]:
        with pytest.raises(CortexError) as err:
            check_positions(bad, 16)
        assert fragment in str(err.value) and "\n" not in str(err.value)


def test_black_fill_blacks_out_exactly_the_masked_cells_in_the_strip(mini, tmp_path):
    ws, info, ids, _, _ = mini
    chosen = [0, 17, 18, 100, 255]
    result = ws.mask(ids[0], positions=[100, 17, 0, 255, 18, 17], out=tmp_path / "strip.png")
    assert result.positions == chosen and result.fill == "black" and result.chosen_by == "given positions"
    grid = torch.tensor(ws.image(ids[0]).tokens).reshape(-1)
    assert result.tokens == [int(grid[p]) for p in chosen]
    original, masked, drawn = _panels(result.out)
    side = original.shape[0]
    assert side == 2 * info.image_size  # the strip's tiles are upscaled 2x (nearest)
    decoded = Image.open(ws.image(ids[0], out=tmp_path / "img.png").out).resize((side, side), Image.NEAREST)
    assert np.array_equal(original, np.asarray(decoded))  # the first panel is the image as it is
    for panel, positions in [(masked, chosen), (drawn, result.random_positions)]:
        cells = _cells(positions, info.grid, side)
        assert (panel[cells] == 0).all() and np.array_equal(panel[~cells], original[~cells])
        assert (original[cells] != 0).any()  # so masking changed those cells
    png = read_png(result.out)
    assert png.model_name == "mini" and png.tokens is None
    assert png.meta == {"figure": "mask", "source": str(ids[0]), "positions": chosen}


def test_judges_give_probabilities_and_masking_the_drawn_positions_equals_the_random_floor(mini):
    ws, info, ids, _, _ = mini
    first = ws.mask(ids[0], positions=[5, 6, 7, 21], seed=3)
    assert [j.judge for j in first.judges] == ["resnet", "vit"]
    assert all(0.0 <= v <= 1.0 for j in first.judges for v in (j.original, j.masked, j.random))
    assert (first.class_id, first.class_name, first.seed) == (0, CONCEPT, 3)
    # masking the positions the floor draws gives the floor's picture: the same numbers
    same = ws.mask(ids[0], positions=first.random_positions, seed=3)
    assert same.random_positions == same.positions == first.random_positions
    assert all(j.masked == j.random for j in same.judges)
    assert [j.masked for j in same.judges] == [j.random for j in first.judges]  # the floor is the drawn positions masked
    assert [j.original for j in same.judges] == [j.original for j in first.judges]  # the unmasked picture does not move
    assert any(j.masked != j.random for j in first.judges)  # other positions: other pictures


def test_random_floor_is_keyed_by_the_images_identity_and_the_seed(mini, tmp_path):
    ws, info, ids, _, _ = mini
    label = default_sampler(model_registry.load_model(info)).label()
    for image_id, image_seed in zip(ids, (0, 1)):
        key = image_key("mini", 0, "train", image_seed, label)
        assert stored_picture(ws.store, info, image_id).key == key
        for seed in (0, 1):
            got = ws.mask(image_id, positions=[1, 2, 3, 4, 5], seed=seed).random_positions
            assert got == random_positions(key, 5, info.grid, seed)
    a, b = (ws.mask(i, positions=[1, 2, 3, 4, 5]).random_positions for i in ids)
    assert a != b
    assert ws.mask(ids[0], positions=[1, 2, 3, 4, 5], seed=0).random_positions != ws.mask(ids[0], positions=[1, 2, 3, 4, 5], seed=1).random_positions
    # the image's cortex PNG is the same picture with the same key: same floor, same numbers
    png = ws.image(ids[0], out=tmp_path / "img.png").out
    from_png, from_store = ws.mask(png, positions=[9, 40, 41]), ws.mask(ids[0], positions=[9, 40, 41])
    assert from_png.source == png and from_store.source == str(ids[0])
    assert {k: v for k, v in from_png.to_dict().items() if k != "source"} == {k: v for k, v in from_store.to_dict().items() if k != "source"}


def test_top_n_masks_the_images_top_tsv_positions(mini):
    ws, info, ids, run_id, _ = mini
    for image_id in ids:
        result = ws.mask(image_id, top_n=3)
        tsv = unpack_tsv(index_store.saliency_maps(ws.store, run_id, [image_id])[image_id], info.grid).reshape(-1)
        assert result.positions == sorted(int(p) for p in tsv.topk(3).indices)
        assert result.chosen_by == f"top 3 TSV (index run {run_id}, ce)"
        assert len(result.random_positions) == 3


def test_the_scored_class_and_fills(mini):
    ws, info, ids, _, _ = mini
    own = ws.mask(ids[0], positions=[0, 1])
    other = ws.mask(ids[0], positions=[0, 1], target="sun")
    assert (other.class_id, other.class_name) == (9, "sun") and other.random_positions == own.random_positions
    assert [j.original for j in other.judges] != [j.original for j in own.judges]
    for fill in FILLS:
        result = ws.mask(ids[0], positions=[0, 1, 16, 17], fill=fill)
        assert result.fill == fill and [j.original for j in result.judges] == [j.original for j in own.judges]


def test_mask_source_ranks_then_masks_in_the_pictures_own_model(mini, tmp_path):
    ws, info, ids, run_id, _ = mini
    ranked = mask_source(ws.store, ids[1], top_n=2, seed=5)
    assert ranked.to_dict() == ws.mask(ids[1], top_n=2, seed=5).to_dict() and ranked.chosen_by == f"top 2 TSV (index run {run_id}, ce)"
    png = ws.image(ids[1], out=tmp_path / "img.png").out
    from_png = mask_source(ws.store, tmp_path / "img.png", positions=[3, 4], target="sun")  # the PNG names its model
    assert (from_png.model, from_png.source, from_png.class_name, from_png.chosen_by) == ("mini", png, "sun", "given positions")
    ws.add_concept("warm things", classes=f"{CONCEPT},sun")
    try:
        with pytest.raises(CortexError, match="mask scores one class; 'warm things' is a concept"):
            mask_source(ws.store, ids[1], positions=[0], target="warm things")
    finally:
        ws.remove_concept("warm things")


def test_bad_requests_are_one_line_errors_that_write_nothing(mini, tmp_path):
    ws, info, ids, _, _ = mini
    out = tmp_path / "strip.png"
    plain = tmp_path / "plain.png"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(plain)
    for call, fragment in [
        (lambda: ws.mask(ids[0], positions=[0, 256], out=out), "position 256 is outside the 16x16 token grid"),
        (lambda: ws.mask(ids[0], positions=[], out=out), "no positions to mask"),
        (lambda: ws.mask(ids[0], positions=[0], fill="gray", out=out), "unknown fill 'gray'; choose one of black, mean, blur, tokens"),
        (lambda: ws.mask(ids[0], positions=[0], target=99, out=out), "99"),
        (lambda: ws.mask(999, positions=[0], out=out), "image id(s) 999 are not images of model 'mini'"),
        (lambda: ws.mask(plain, positions=[0], out=out), "names no class; give the class the judges should score (--class)"),
        (lambda: ws.mask(ids[0], top_n=0, out=out), "--top-n must be >= 1"),
    ]:
        with pytest.raises(CortexError) as err:
            call()
        assert fragment in str(err.value) and "\n" not in str(err.value)
    assert not out.exists()
    assert ws.mask(plain, positions=[0], target=CONCEPT).class_name == CONCEPT  # a plain picture scores the class it is given


def test_a_model_without_judges_is_refused(store, tiny_model, tmp_path):
    tiny_png(tiny_model, tmp_path / "t.png")
    from cortex_cli.judges.masked import png_picture

    picture = png_picture(tiny_model, tmp_path / "t.png")
    with pytest.raises(CortexError, match="no judges known for model 'tiny'"):
        mask_picture(store, tiny_model, picture, [0, 1], out=tmp_path / "strip.png")
    assert not (tmp_path / "strip.png").exists()
