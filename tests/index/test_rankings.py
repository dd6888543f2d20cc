"""Queries: the SQL answers equal a Python recount over the stored rows."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest
from sqlalchemy import select

from cortex_cli.core.errors import CortexError
from cortex_cli.images.generation import ensure_images, image_tokens
from cortex_cli.index.build import IndexJob, index_jobs
from cortex_cli.index.rankings import pick_run, token_usage, top_tokens
from cortex_cli.attribution import SaliencySettings
from cortex_cli.store.schema import SalientTokenRow

from index_helpers import ToyExtractor, index_three_classes, store_random_images

pytestmark = pytest.mark.both_backends  # store/db_url tests run on SQLite and PostgreSQL

SETTINGS = SaliencySettings(samples=2, top_n=8)


@pytest.fixture
def indexed(store, tiny_model):
    # class 0 has 7 stored images, 5 indexed: every count reads the 5 indexed ones only
    return index_three_classes(store, tiny_model, SETTINGS)


def salient_rows(store, class_pk=None):
    with store.session() as s:
        q = select(SalientTokenRow.class_pk, SalientTokenRow.image_id, SalientTokenRow.token, SalientTokenRow.tsv)
        if class_pk is not None:
            q = q.where(SalientTokenRow.class_pk == class_pk)
        return s.execute(q).all()


def ranked(counter: dict, k: int) -> list:
    return sorted(counter, key=lambda t: (-counter[t], t))[:k]


def test_top_tokens_and_baseline_equal_python_recount(store, tiny_model, indexed):
    _, all_classes = indexed
    cls = all_classes[0]
    result = top_tokens(store, tiny_model, cls, k=10, baseline="frequency")
    rows = salient_rows(store, cls.pk)
    count = Counter(t for _, _, t, _ in rows)
    images = defaultdict(set)
    tsvs = defaultdict(list)
    for _, image_id, t, v in rows:
        images[t].add(image_id)
        tsvs[t].append(v)
    expected = ranked(count, 10)
    assert [r.token for r in result.rows] == expected
    assert [r.rank for r in result.rows] == list(range(1, 11))
    for r in result.rows:
        assert r.count == count[r.token] and r.n_images == len(images[r.token])
        assert r.mean_tsv == pytest.approx(sum(tsvs[r.token]) / len(tsvs[r.token]))
    assert result.images_indexed == 5

    assert result.image_seeds == "0-4"
    # baseline: all positions of the same 5 indexed images (not the 7 stored)
    ids = ensure_images(store, tiny_model, cls, "train", 5)
    grids = image_tokens(store, tiny_model, ids).reshape(5, -1)
    occ = Counter(int(t) for t in grids.flatten())
    present = Counter(int(t) for g in grids for t in set(g.tolist()))
    assert [b.token for b in result.baseline] == ranked(occ, 10)
    assert all(b.count == occ[b.token] and b.n_images == present[b.token] for b in result.baseline)
    assert result.baseline_images == 5
    ours, theirs = set(expected), set(ranked(occ, 10))
    assert result.overlap == len(ours & theirs)
    assert result.overlap_fraction == pytest.approx(len(ours & theirs) / len(ours))
    assert result.jaccard == pytest.approx(len(ours & theirs) / len(ours | theirs))


def test_token_usage_equals_python_recount(store, tiny_model, indexed):
    _, all_classes = indexed
    rows = salient_rows(store)
    token = Counter(t for _, _, t, _ in rows).most_common(1)[0][0]
    usage = token_usage(store, tiny_model, token, top=20)
    by_class = Counter(pk for pk, _, t, _ in rows if t == token)
    pk_to_id = {c.pk: c.class_id for c in all_classes}
    expected = sorted(by_class, key=lambda pk: (-by_class[pk], pk_to_id[pk]))
    assert [u.class_id for u in usage.salient] == [pk_to_id[pk] for pk in expected]
    for u in usage.salient:
        pk = next(c.pk for c in all_classes if c.class_id == u.class_id)
        assert u.count == by_class[pk]
        assert u.n_images == len({i for p, i, t, _ in rows if p == pk and t == token})
        class_counts = Counter(t for p, _, t, _ in rows if p == pk)
        assert u.token_rank == ranked(class_counts, 10**6).index(token) + 1
    # occurrences: over the same indexed images (5 per class; class 0's two extra stored ones are not counted)
    assert usage.images_counted == 15
    for u in usage.occurrence:
        cls = next(c for c in all_classes if c.class_id == u.class_id)
        ids = ensure_images(store, tiny_model, cls, "train", 5)
        grids = image_tokens(store, tiny_model, ids).reshape(len(ids), -1)
        occ = Counter(int(t) for t in grids.flatten())
        assert u.count == occ[token]
        assert u.token_rank == ranked(occ, 10**6).index(token) + 1
    assert [u.count for u in usage.occurrence] == sorted((u.count for u in usage.occurrence), reverse=True)
    assert usage.extractor == "ce"
    assert len(usage.salient) >= 2 and len(usage.occurrence) == 3


def test_errors(store, tiny_model, indexed):
    _, all_classes = indexed
    with pytest.raises(CortexError, match=r"run `cortex index --class 'analog clock'` first"):
        top_tokens(store, tiny_model, all_classes[3])
    with pytest.raises(CortexError, match="-k must be a positive"):
        top_tokens(store, tiny_model, all_classes[0], k=0)
    with pytest.raises(CortexError, match="no extractor named 're'.*cortex train-extractor"):
        top_tokens(store, tiny_model, all_classes[0], extractor="re")
    with pytest.raises(CortexError, match="outside model 'tiny'"):
        token_usage(store, tiny_model, 64)
    with pytest.raises(CortexError, match="no indexed val images"):
        top_tokens(store, tiny_model, all_classes[0], split="val")


def test_pick_run_prefers_newest_run_covering_the_class(store, tiny_model, indexed):
    info, all_classes = indexed
    first = pick_run(store, tiny_model, all_classes[0])
    index_jobs(store, tiny_model, info, [IndexJob(all_classes[1])], n_images=2, settings=SaliencySettings(samples=2, top_n=4), extractor=ToyExtractor())
    assert pick_run(store, tiny_model, all_classes[0]).id == first.id
    assert pick_run(store, tiny_model, all_classes[1]).id != first.id
    assert top_tokens(store, tiny_model, all_classes[1], run=first.id).images_indexed == 5


def test_images_restricts_to_exact_seeds(store, tiny_model, indexed):
    _, all_classes = indexed
    cls = all_classes[0]
    part = top_tokens(store, tiny_model, cls, k=10, images=3, baseline="frequency")
    ids = ensure_images(store, tiny_model, cls, "train", 3)
    rows = [r for r in salient_rows(store, cls.pk) if r[1] in ids]
    assert [r.token for r in part.rows] == ranked(Counter(t for _, _, t, _ in rows), 10)
    assert part.images_indexed == 3 and part.image_seeds == "0-2" and part.baseline_images == 3
    occ = Counter(int(t) for t in image_tokens(store, tiny_model, ids).flatten())
    assert [b.token for b in part.baseline] == ranked(occ, 10)
    with pytest.raises(CortexError, match=r"only 5 of the train seeds 0\.\.6 of 'goldfinch' are indexed.*--images 7"):
        top_tokens(store, tiny_model, cls, images=7)
    with pytest.raises(CortexError, match="--images must be >= 1"):
        top_tokens(store, tiny_model, cls, images=0)


def test_specific_baseline_equals_python_recount(store, tiny_model, indexed):
    _, all_classes = indexed
    cls = all_classes[0]
    with pytest.raises(CortexError, match="lack them.*cortex index --class all --images 5"):
        top_tokens(store, tiny_model, cls, k=10, baseline="specific")
    for other in all_classes[3:]:
        store_random_images(store, tiny_model, other, 5)
    result = top_tokens(store, tiny_model, cls, k=10, baseline="specific")
    per_class = {}
    for c in all_classes:
        grids = image_tokens(store, tiny_model, ensure_images(store, tiny_model, c, "train", 5))
        per_class[c.pk] = Counter(int(t) for t in grids.flatten())
    total = Counter()
    for counts in per_class.values():
        total.update(counts)
    own = per_class[cls.pk]
    score = {t: (own[t] + 1) / (total[t] + len(all_classes)) for t in own}
    expected = sorted(score, key=lambda t: (-score[t], -own[t], t))[:10]
    assert [b.token for b in result.baseline] == expected
    assert [b.score for b in result.baseline] == pytest.approx([score[t] for t in expected], abs=1e-6)
    assert result.contrast_classes == len(all_classes) and result.contrast_images == 5 * len(all_classes)
    # a token this class uses much more than others outranks a frequent token every class shares
    assert result.baseline[0].score > 1 / len(all_classes)
    with pytest.raises(CortexError, match="--baseline must be one of frequency, specific"):
        top_tokens(store, tiny_model, cls, baseline="tfidf")
