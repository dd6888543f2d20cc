"""The token index: rows written, resumable after a kill, idempotent, equal to direct saliency."""

from __future__ import annotations

import pytest
import torch
from sqlalchemy import func, select

from cortex_cli.models import registry as model_registry
from cortex_cli.core.errors import CortexError
from cortex_cli.images.generation import image_keys, image_tokens
from cortex_cli.index.build import CommitPolicy, IndexJob, ensure_run, index_class, index_jobs, index_named, index_rows, unpack_tsv
from cortex_cli.attribution import SaliencySettings, token_saliency, top_positions
from cortex_cli.store.index import write_index
from cortex_cli.store.schema import SaliencyMapRow, SaliencyRunRow, SalientTokenRow

from index_helpers import ToyExtractor, register_toy

pytestmark = pytest.mark.both_backends  # store/db_url tests run on SQLite and PostgreSQL

SETTINGS = SaliencySettings(samples=3, top_n=5)


class Boom(RuntimeError):
    pass


def counts(store):
    with store.session() as s:
        return (
            s.scalar(select(func.count()).select_from(SaliencyRunRow)),
            s.scalar(select(func.count()).select_from(SaliencyMapRow)),
            s.scalar(select(func.count()).select_from(SalientTokenRow)),
        )


def test_index_writes_maps_and_top_rows_equal_to_direct_saliency(store, tiny_model):
    info = register_toy(store, tiny_model)
    ext = ToyExtractor()
    cls = model_registry.resolve_class(store, tiny_model, "black grouse")
    result = index_class(store, tiny_model, info, cls, n_images=6, settings=SETTINGS, batch_size=4, extractor=ext)
    assert (result.images, result.added, result.skipped) == (6, 6, 0)
    assert counts(store) == (1, 6, 30)
    with store.session() as s:
        maps = dict(s.execute(select(SaliencyMapRow.image_id, SaliencyMapRow.tsv)).all())
        rows = s.execute(select(SalientTokenRow).order_by(SalientTokenRow.image_id, SalientTokenRow.rank)).scalars().all()
    ids = sorted(maps)
    tokens = image_tokens(store, tiny_model, ids)
    emb = model_registry.load_model(tiny_model).embed(tokens)
    direct = token_saliency(ext, emb, [cls.class_id] * len(ids), image_keys(store, tiny_model, ids), SETTINGS)
    for i, image_id in enumerate(ids):
        stored = unpack_tsv(maps[image_id], tiny_model.grid)
        torch.testing.assert_close(stored, direct[i], rtol=1e-5, atol=1e-7)
        mine = [r for r in rows if r.image_id == image_id]
        assert [r.rank for r in mine] == list(range(5))
        top = top_positions(direct[i], 5)
        assert [r.position for r in mine] == [p for p, _ in top]
        assert [r.token for r in mine] == [int(tokens[i].reshape(-1)[p]) for p, _ in top]
        assert all(r.class_pk == cls.pk for r in mine)
        assert [r.tsv for r in mine] == sorted((r.tsv for r in mine), reverse=True)


def test_killed_index_resumes_without_duplicates(store, tiny_model):
    info = register_toy(store, tiny_model)
    cls = model_registry.resolve_class(store, tiny_model, "goldfinch")
    calls = []

    def die_after_two_batches(done, total, info=""):
        calls.append(done)
        if len(calls) == 3:  # initial report, then two committed batches
            raise Boom("killed")

    with pytest.raises(Boom):  # one transaction per batch of 3 (the default groups ~1 s of work: test_index_writer)
        index_class(store, tiny_model, info, cls, n_images=10, settings=SETTINGS, batch_size=3, extractor=ToyExtractor(), progress=die_after_two_batches,
                    commit=CommitPolicy(images=3))
    assert counts(store) == (1, 6, 30)  # exactly the two committed batches
    again = index_class(store, tiny_model, info, cls, n_images=10, settings=SETTINGS, batch_size=3, extractor=ToyExtractor())
    assert (again.added, again.skipped) == (4, 6)
    assert counts(store) == (1, 10, 50)
    with store.session() as s:
        per_image = s.execute(select(SalientTokenRow.image_id, func.count()).group_by(SalientTokenRow.image_id)).all()
    assert sorted(n for _, n in per_image) == [5] * 10
    # a third run is a no-op
    third = index_class(store, tiny_model, info, cls, n_images=10, settings=SETTINGS, batch_size=3, extractor=ToyExtractor())
    assert (third.added, third.skipped) == (0, 10)
    assert counts(store) == (1, 10, 50)


def test_rows_written_twice_are_ignored(store, tiny_model):
    """Two processes racing on the same batch: the second insert leaves one row set."""
    info = register_toy(store, tiny_model)
    cls = model_registry.resolve_class(store, tiny_model, "goldfinch")
    index_class(store, tiny_model, info, cls, n_images=2, settings=SETTINGS, extractor=ToyExtractor())
    run_id = ensure_run(store, tiny_model, info.id, SETTINGS)
    ids = [1, 2]
    write_index(store, run_id, [index_rows(cls.pk, ids, image_tokens(store, tiny_model, ids), torch.rand(2, 16, 16), SETTINGS.top_n)])
    assert counts(store) == (1, 2, 10)


def test_new_parameters_make_a_new_run(store, tiny_model):
    info = register_toy(store, tiny_model)
    cls = model_registry.resolve_class(store, tiny_model, "analog clock")
    a = index_class(store, tiny_model, info, cls, n_images=2, settings=SETTINGS, extractor=ToyExtractor())
    b = index_class(store, tiny_model, info, cls, n_images=2, settings=SaliencySettings(samples=3, top_n=5, reduce="signed-max"), extractor=ToyExtractor())
    assert a.run_id != b.run_id
    assert ensure_run(store, tiny_model, info.id, SETTINGS) == a.run_id
    assert counts(store) == (2, 4, 20)


def test_index_all_classes_and_bad_input(store, tiny_model):
    info = register_toy(store, tiny_model)
    all_classes = model_registry.classes(store, tiny_model)
    results = index_jobs(store, tiny_model, info, [IndexJob(c) for c in all_classes], n_images=2, settings=SETTINGS, extractor=ToyExtractor())
    assert [r.class_id for r in results] == [0, 1, 2, 3]
    assert counts(store) == (1, 8, 40)
    with pytest.raises(CortexError, match="--images"):
        index_class(store, tiny_model, info, all_classes[0], n_images=0, extractor=ToyExtractor())
    with pytest.raises(CortexError, match="--samples"):
        index_class(store, tiny_model, info, all_classes[0], n_images=2, settings=SaliencySettings(samples=0), extractor=ToyExtractor())


def test_index_named_resolves_the_extractor_and_names_and_leads_progress_notes(store, tiny_model, tmp_path):
    from cortex_cli.models import concepts
    from tests.index_helpers import store_random_images
    from tests.search.test_edit import register_tiny_ce

    register_tiny_ce(store, tiny_model, tmp_path)
    store_random_images(store, tiny_model, model_registry.resolve_class(store, tiny_model, 0), 2)
    notes = []
    (result,) = index_named(store, tiny_model, "ce", "goldfinch", SETTINGS, n_images=3,
                            progress=lambda done, total, info="": notes.append(info))
    assert (result.class_id, result.images, result.added) == (0, 3, 3)  # the third image is generated first
    assert {n.split(":")[0] for n in notes} == {"saliency", "generating missing images"}
    concepts.add_concept(store, tiny_model, "pair", classes=[model_registry.resolve_class(store, tiny_model, n) for n in (0, 2)])
    pair = index_named(store, tiny_model, None, "pair", SETTINGS, n_images=1)  # None: the default extractor, 'ce'
    assert [(r.class_id, r.concept) for r in pair] == [(0, "pair"), (2, "pair")]
    with pytest.raises(CortexError, match="has no extractor named 're'"):
        index_named(store, tiny_model, "re", "goldfinch", SETTINGS, n_images=1)
    with pytest.raises(CortexError, match="did you mean"):
        index_named(store, tiny_model, "ce", "goldfinc", SETTINGS, n_images=1)


def _index_by_seed(store, model, info, cls):
    """seed -> (TSV map bytes, [(rank, position, token, tsv)]) of a class's indexed images."""
    from cortex_cli.store.schema import ImageRow

    with store.session() as s:
        maps = dict(s.execute(select(ImageRow.seed, SaliencyMapRow.tsv).join(ImageRow, ImageRow.id == SaliencyMapRow.image_id)
                              .where(ImageRow.class_pk == cls.pk)).all())
        rows = s.execute(select(ImageRow.seed, SalientTokenRow.rank, SalientTokenRow.position, SalientTokenRow.token, SalientTokenRow.tsv)
                         .join(ImageRow, ImageRow.id == SalientTokenRow.image_id).where(SalientTokenRow.class_pk == cls.pk)
                         .order_by(ImageRow.seed, SalientTokenRow.rank)).all()
    return {seed: (blob, [tuple(r[1:]) for r in rows if r[0] == seed]) for seed, blob in maps.items()}


def test_index_does_not_depend_on_database_history(new_db_url, tiny_model_files):
    """The same class indexed in a fresh store and in one pre-filled with unrelated rows: identical rows."""
    from cortex_cli.store.database import open_store

    from index_helpers import store_random_images

    results = []
    for name, prefill in (("fresh", False), ("used", True)):
        store = open_store(new_db_url(name))
        config, ckpt, labels = tiny_model_files
        model = model_registry.add_model(store, "tiny", config, ckpt, str(labels))
        info = register_toy(store, model)
        every = model_registry.classes(store, model)
        if prefill:  # unrelated images and an extra index first: every later row id shifts
            store_random_images(store, model, every[3], 9, split="val", seed=50)
            index_class(store, model, info, every[1], n_images=3, settings=SETTINGS, extractor=ToyExtractor())
        store_random_images(store, model, every[2], 6)
        index_class(store, model, info, every[2], n_images=6, settings=SETTINGS, batch_size=4 if prefill else 6, extractor=ToyExtractor())
        results.append(_index_by_seed(store, model, info, every[2]))
        store.close()
    fresh, used = results
    assert sorted(fresh) == list(range(6))
    assert fresh == used
    # the keys really are identities: another seed's image gets other noise, hence another map
    assert len({blob for blob, _ in fresh.values()}) == 6
