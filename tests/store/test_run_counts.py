"""Per-run token counts: exact over the run's images, added once per image, backfilled by the migration."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import select

from cortex_cli.images.generation import image_tokens
from cortex_cli.index.build import IndexJob, index_jobs, index_rows
from cortex_cli.index.rankings import pick_run, token_usage
from cortex_cli.attribution import SaliencySettings
from cortex_cli.store.database import _alembic_config
from cortex_cli.store.index import write_index
from cortex_cli.store.schema import RunClassCountRow, RunTokenCountRow, SalientTokenRow

from index_helpers import ToyExtractor, index_three_classes

pytestmark = pytest.mark.both_backends

SETTINGS = SaliencySettings(samples=2, top_n=8, noise="host")  # host: the migration test downgrades below 0013


@pytest.fixture
def indexed(store, tiny_model):
    return index_three_classes(store, tiny_model, SETTINGS)


def count_rows(store) -> tuple[list, list]:
    with store.session() as s:
        tokens = [tuple(r) for r in s.execute(select(RunTokenCountRow.__table__).order_by(*RunTokenCountRow.__table__.primary_key))]
        classes = [tuple(r) for r in s.execute(select(RunClassCountRow.__table__).order_by(*RunClassCountRow.__table__.primary_key))]
    return tokens, classes


def salient_tokens(store) -> list[int]:
    with store.session() as s:
        return sorted(set(s.scalars(select(SalientTokenRow.token))))


def test_counts_answer_token_exactly_as_the_recount_over_the_same_images(store, tiny_model, indexed):
    # images=5 takes the exact path (token grids and salient rows of seeds 0..4, which the run indexed)
    for token in salient_tokens(store)[:12]:
        fast = token_usage(store, tiny_model, token, top=20)
        exact = token_usage(store, tiny_model, token, top=20, images=5)
        assert fast.salient == exact.salient and fast.occurrence == exact.occurrence
        assert fast.images_counted == exact.images_counted == 15  # not class 0's two unindexed images


def test_rewriting_a_batch_or_reindexing_counts_nothing_twice(store, tiny_model, indexed):
    info, all_classes = indexed
    before = count_rows(store)
    cls = all_classes[0]
    run = pick_run(store, tiny_model, cls)
    with store.session() as s:
        ids = sorted(set(s.scalars(select(SalientTokenRow.image_id).where(SalientTokenRow.class_pk == cls.pk))))[:3]
    tokens = image_tokens(store, tiny_model, ids)
    write_index(store, run.id, [index_rows(cls.pk, ids, tokens, tokens.float(), SETTINGS.top_n)])  # another writer's copy of a batch
    index_jobs(store, tiny_model, info, [IndexJob(c) for c in all_classes[:3]], n_images=5, settings=SETTINGS, extractor=ToyExtractor())
    assert count_rows(store) == before
    index_jobs(store, tiny_model, info, [IndexJob(all_classes[0])], n_images=7, settings=SETTINGS, extractor=ToyExtractor())
    after = count_rows(store)
    assert sum(r[-1] for r in after[1]) == 17
    assert token_usage(store, tiny_model, salient_tokens(store)[0]).images_counted == 17


def test_migration_backfills_what_older_versions_indexed(store, tiny_model, indexed):
    before = count_rows(store)
    assert before[0] and before[1]
    cfg = _alembic_config()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0006")  # drops the counts: the state an older cortex left
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    assert count_rows(store) == before
