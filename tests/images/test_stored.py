"""`stored_image` and `write_stored_png` on the tiny model: a stored row's identity, tokens and index runs, as JSON and as a cortex PNG."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from cortex_cli import Workspace
from cortex_cli.attribution import SaliencySettings
from cortex_cli.backends.base import to_pil
from cortex_cli.core.errors import CortexError, NotFound
from cortex_cli.images.generation import default_sampler
from cortex_cli.images.pngmeta import read_png
from cortex_cli.images.stored import stored_image, stored_image_out, write_stored_png
from cortex_cli.index.build import IndexJob, index_jobs
from cortex_cli.models import registry as model_registry

from tests.index_helpers import ToyExtractor, register_toy, store_random_images

pytestmark = pytest.mark.both_backends  # store/db_url tests run on SQLite and PostgreSQL


def _grids(cls, n, seed, vocab):
    """The grids `store_random_images` stores (the same generator)."""
    return torch.randint(0, vocab, (n, 16, 16), generator=torch.Generator().manual_seed(1000 * cls.class_id + seed))


@pytest.fixture
def grouse(store, tiny_model):
    """Two val images of 'black grouse' (seeds 5, 6) with random tokens: (ids, their grids)."""
    cls = model_registry.resolve_class(store, tiny_model, "black grouse")
    return store_random_images(store, tiny_model, cls, 2, split="val", seed=5, vocab=64), _grids(cls, 2, 5, 64)


def test_stored_image_is_the_rows_identity_and_token_grid(store, tiny_model, grouse):
    ids, grids = grouse
    image = stored_image(store, tiny_model, ids[1])
    label = default_sampler(model_registry.load_model(tiny_model)).label()
    assert (image.id, image.model, image.class_id, image.class_name, image.split, image.seed, image.sampler) == (
        ids[1], "tiny", 2, "black grouse", "val", 6, label)
    assert (image.grid, image.image_size, image.indexed_by, image.out) == (16, 64, [], None)
    assert image.tokens == grids[1].tolist() and image.tokens != grids[0].tolist()
    assert image.table_rows() == [{"id": ids[1], "class": "black grouse", "split": "val", "seed": 6, "sampler": label,
                                   "grid": "16x16", "indexed by runs": "none"}]
    with pytest.raises(dataclasses.FrozenInstanceError):
        image.seed = 0


def test_to_dict_is_every_field_as_plain_json(store, tiny_model, grouse):
    ids, grids = grouse
    image = stored_image(store, tiny_model, ids[0])
    data = image.to_dict()
    assert data == {"id": ids[0], "model": "tiny", "class_id": 2, "class_name": "black grouse", "split": "val", "seed": 5,
                    "sampler": image.sampler, "grid": 16, "image_size": 64, "tokens": grids[0].tolist(), "indexed_by": [], "out": None}
    assert json.loads(json.dumps(data)) == data


def test_indexed_by_lists_the_runs_holding_its_map_newest_first(store, tiny_model):
    info = register_toy(store, tiny_model)
    cls = model_registry.classes(store, tiny_model)[0]
    ids = store_random_images(store, tiny_model, cls, 3)  # seeds 0..2; the runs index seeds 0, 1
    for samples in (2, 3):
        index_jobs(store, tiny_model, info, [IndexJob(cls)], n_images=2, settings=SaliencySettings(samples=samples, top_n=4),
                   extractor=ToyExtractor())
    assert stored_image(store, tiny_model, ids[0]).indexed_by == [2, 1]
    assert stored_image(store, tiny_model, ids[1]).table_rows()[0]["indexed by runs"] == "2, 1"
    assert stored_image(store, tiny_model, ids[2]).indexed_by == []


def test_unknown_ids_are_not_found_and_malformed_ids_are_refused(store, tiny_model, tiny_model_files, grouse):
    ids, _ = grouse
    with pytest.raises(NotFound) as err:
        stored_image(store, tiny_model, 999)
    assert str(err.value) == "image id(s) 999 are not images of model 'tiny'; run `cortex generate` first"
    config, ckpt, labels = tiny_model_files
    other = model_registry.add_model(store, "tiny2", config, ckpt, str(labels))
    with pytest.raises(NotFound, match=f"image id\\(s\\) {ids[0]} are not images of model 'tiny2'"):
        stored_image(store, other, ids[0])  # an image of another model
    for bad in (0, -3, True, "1", 1.0):
        with pytest.raises(CortexError, match="an image id is a positive integer") as err:
            stored_image(store, tiny_model, bad)
        assert not isinstance(err.value, NotFound) and "\n" not in str(err.value)


def test_write_stored_png_carries_tokens_model_and_identity(store, tiny_model, grouse, tmp_path):
    ids, grids = grouse
    image = stored_image(store, tiny_model, ids[1])
    written = write_stored_png(store, tiny_model, image, tmp_path / "sub" / "grouse.png")
    assert written.out == str(tmp_path / "sub" / "grouse.png") and dataclasses.replace(written, out=None) == image
    png = read_png(tmp_path / "sub" / "grouse.png")
    assert torch.equal(png.tokens, grids[1]) and png.model_name == "tiny" and png.n_embed == 64
    assert png.meta == {"image_id": ids[1], "class_id": 2, "class_name": "black grouse", "split": "val", "seed": 6,
                        "sampler": image.sampler} == image.png_meta()
    decoded = to_pil(model_registry.load_model(tiny_model).decode_tokens(grids[1][None]))[0]
    assert png.image.size == (64, 64) and np.array_equal(np.asarray(png.image.convert("RGB")), np.asarray(decoded.convert("RGB")))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(CortexError, match="cannot write PNG"):
        write_stored_png(store, tiny_model, image, blocker / "x.png")


def test_stored_image_out_writes_only_when_given_a_path(store, tiny_model, grouse, tmp_path):
    ids, grids = grouse
    before = set(tmp_path.iterdir())
    assert stored_image_out(store, tiny_model, ids[0]) == stored_image(store, tiny_model, ids[0]) and set(tmp_path.iterdir()) == before
    written = stored_image_out(store, tiny_model, ids[0], tmp_path / "b.png")
    assert written.out == str(tmp_path / "b.png") and torch.equal(read_png(tmp_path / "b.png").tokens, grids[0])
    with pytest.raises(NotFound):
        stored_image_out(store, tiny_model, 999, tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def test_workspace_image_is_stored_image_and_writes_with_out(db_url, store, tiny_model, grouse, cortex_home, tmp_path):
    ids, grids = grouse
    with Workspace(home=cortex_home, db=db_url, device="cpu") as ws:
        assert ws.image(ids[0], model="tiny") == stored_image(store, tiny_model, ids[0])
        written = ws.image(ids[0], model="tiny", out=tmp_path / "a.png")
        with pytest.raises(NotFound):
            ws.image(999, model="tiny")
    assert written.out == str(tmp_path / "a.png") and torch.equal(read_png(tmp_path / "a.png").tokens, grids[0])
