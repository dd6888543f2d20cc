"""N writer processes at once, on PostgreSQL and on SQLite (WAL): all succeed, no duplicate, no lost row.

Each writer (tests/store_writers.py) opens the store by URL, registers the bundled model as every
CLI process does, generates and indexes its own class, and generates and indexes one class that
every writer works on, with batch sizes that do not line up, so their transactions interleave.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cortex_cli.models import registry as model_registry
from cortex_cli.images.generation import image_tokens
from cortex_cli.store.schema import ExtractorRow, ImageRow, ModelRow, RunClassCountRow, RunTokenCountRow, SaliencyMapRow, SaliencyRunRow, SalientTokenRow, TokenCountRow

import store_writers
from index_helpers import register_toy
from store_writers import OWN_IMAGES, SETTINGS, SHARED_IMAGES

pytestmark = pytest.mark.both_backends

WRITERS = 3  # own classes 0..2; class 3 is the shared one


def _forkserver(monkeypatch):
    """A forkserver that has imported torch, taming and cortex once: writers start in well under a second."""
    # Python < 3.12 starts the forkserver without our sys.path, so it finds tests/ through PYTHONPATH
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")])))
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["store_writers"])
    return ctx


def _run_writers(db_url: str, extractor_id: int, monkeypatch) -> list[dict]:
    ctx = _forkserver(monkeypatch)
    barrier, results = ctx.Barrier(WRITERS), ctx.Queue()
    procs = [
        ctx.Process(target=store_writers.write, args=(db_url, c, WRITERS, extractor_id, 1 + c, barrier, results))
        for c in range(WRITERS)
    ]
    for p in procs:
        p.start()
    try:
        outcomes = [results.get(timeout=180) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    errors = [details for _, status, details in outcomes if status != "ok"]
    assert not errors, "\n\n".join(errors)
    assert all(p.exitcode == 0 for p in procs)
    return [details for _, _, details in sorted(outcomes)]


def _recount(store, model) -> dict:
    """(class_pk, split, token) -> (count, n_images) recomputed in Python from the stored grids."""
    counts: dict = {}
    with store.session() as s:
        rows = s.execute(select(ImageRow.id, ImageRow.class_pk, ImageRow.split).where(ImageRow.model_id == model.id)).all()
    for image_id, class_pk, split in rows:
        grid = image_tokens(store, model, [image_id])[0].flatten().tolist()
        for token, n in Counter(grid).items():
            c, k = counts.get((class_pk, split, token), (0, 0))
            counts[(class_pk, split, token)] = (c + n, k + 1)
    return counts


def test_writers_at_once_lose_and_duplicate_nothing(store, tiny_model, db_url, monkeypatch):
    toy = register_toy(store, tiny_model)
    results = _run_writers(db_url, toy.id, monkeypatch)

    classes = model_registry.classes(store, tiny_model)
    with store.session() as s:
        def seeds(cls, split):
            return sorted(s.scalars(select(ImageRow.seed).where(ImageRow.class_pk == cls.pk, ImageRow.split == split)))

        for cls in classes[:WRITERS]:
            assert seeds(cls, "train") == list(range(OWN_IMAGES))
        assert seeds(classes[WRITERS], "val") == list(range(SHARED_IMAGES))
        assert s.scalar(select(func.count()).select_from(ImageRow)) == WRITERS * OWN_IMAGES + SHARED_IMAGES
        # the bundled model and its extractors were registered exactly once, whoever won
        assert s.scalars(select(ModelRow.name).order_by(ModelRow.name)).all() == ["mini", "tiny"]
        mini = s.scalar(select(ModelRow.id).where(ModelRow.name == "mini"))
        assert sorted(s.scalars(select(ExtractorRow.name).where(ExtractorRow.model_id == mini))) == ["ce", "re"]
        # one run for the shared settings; every image indexed once, top-n rows each
        assert s.scalar(select(func.count()).select_from(SaliencyRunRow)) == 1
        n_images = WRITERS * OWN_IMAGES + SHARED_IMAGES
        assert s.scalar(select(func.count()).select_from(SaliencyMapRow)) == n_images
        assert s.scalar(select(func.count()).select_from(SalientTokenRow)) == n_images * SETTINGS.top_n
        counts = {(r.class_pk, r.split, r.token): (r.count, r.n_images) for r in s.scalars(select(TokenCountRow))}
        run_counts = {(r.class_pk, r.split, r.token): r for r in s.scalars(select(RunTokenCountRow))}
        run_images = {(r.class_pk, r.split): r.images for r in s.scalars(select(RunClassCountRow))}
        salient = Counter((pk, t) for pk, t in s.execute(select(SalientTokenRow.class_pk, SalientTokenRow.token)))
    # token counts were added once per stored image: none double-counted, none lost
    recount = _recount(store, tiny_model)
    assert counts == recount
    # and the run's counts once per indexed image (every stored image is indexed here), however the writers interleaved
    assert {k: (r.occurrences, r.occurrence_images) for k, r in run_counts.items()} == recount
    assert {(pk, t): r.salient for (pk, _, t), r in run_counts.items() if r.salient} == dict(salient)
    assert run_images == {**{(c.pk, "train"): OWN_IMAGES for c in classes[:WRITERS]}, (classes[WRITERS].pk, "val"): SHARED_IMAGES}

    assert {r["runs"] for r in results} == {(results[0]["runs"][0],) * 2}
    assert all(r["indexed"] == (OWN_IMAGES, SHARED_IMAGES) for r in results)
    assert all(r["own"][:2] == (OWN_IMAGES, 0) for r in results)
    assert sum(r["shared"][0] for r in results) == SHARED_IMAGES  # each shared row added by exactly one writer
    assert all(added + skipped == SHARED_IMAGES for added, skipped, _ in (r["shared"] for r in results))
    assert len({tuple(r["shared"][2]) for r in results}) == 1  # and every writer got the same ids back
