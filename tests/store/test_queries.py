import numpy as np
import pytest

from cortex_cli.store import index, queries
from cortex_cli.store.registered_models import model_classes

from store_rows import add_extractor, add_images, add_model

pytestmark = pytest.mark.both_backends


def _run(store, model):
    key = index.RunKey(add_extractor(store, model), samples=2, alpha=0.2, top_n=2, reduce="max-abs", precision="fp32", seed=0)
    return index.ensure_run(store, model.id, key)


def _index(store, run_id, class_pk, rows: dict[int, list[tuple[int, float]]]):
    """image id -> its top-n as (token, tsv) by rank; positions are rank * 3."""
    salient = [(i, rank, 3 * rank, t, v) for i, top in rows.items() for rank, (t, v) in enumerate(top)]
    image, rank, position, token, tsv = (np.array(column) for column in zip(*salient))
    grids = np.array([[t for t, _ in top] for top in rows.values()])
    index.write_index(store, run_id, [index.IndexRows(
        class_pk=class_pk, image_ids=np.array(list(rows), dtype=np.int64), maps=[np.zeros(4, dtype="<f4").tobytes()] * len(rows),
        grids=grids, top=grids, salient_image_ids=image, ranks=rank, positions=position, tokens=token, tsv=tsv.astype(np.float64),
    )])


def test_run_images_and_first_run_with_a_class(store):
    model = add_model(store)
    c0, c1 = (c.pk for c in model_classes(store, model.id))
    ids = add_images(store, model, c0, [2, 0, 1])
    val = add_images(store, model, c0, [0], split="val")
    older, newer = _run(store, model), _run(store, model)
    assert older == newer  # same key: one run
    _index(store, older, c0, {ids[2]: [(1, 1.0)], ids[0]: [(1, 1.0)], val[0]: [(1, 1.0)]})
    assert queries.run_class_images(store, older, c0, "train") == [(ids[0], 0, "s"), (ids[2], 2, "s")]
    assert queries.run_class_images(store, older, c0, "train", below_seed=2) == [(ids[0], 0, "s")]
    assert queries.first_run_with_class(store, [999, older], [c0]) == older
    assert queries.first_run_with_class(store, [older], [c1]) is None


def test_top_salient_tokens_counts_only_the_given_images(store):
    model = add_model(store)
    c0 = model_classes(store, model.id)[0].pk
    ids = add_images(store, model, c0, [0, 1, 2])
    run_id = _run(store, model)
    _index(store, run_id, c0, {ids[0]: [(5, 3.0), (4, 1.0)], ids[1]: [(4, 2.0), (5, 1.0)], ids[2]: [(7, 9.0), (7, 9.0)]})
    assert queries.top_salient_tokens(store, run_id, [c0], [ids[0], ids[1]], k=5) == [(4, 2, 2, 1.5), (5, 2, 2, 2.0)]
    # ties on count go to the smaller token
    assert queries.top_salient_tokens(store, run_id, [c0], list(ids.values()), k=3) == [(4, 2, 2, 1.5), (5, 2, 2, 2.0), (7, 2, 1, 9.0)]


def test_token_positions_takes_the_first_images_that_hold_the_token(store):
    model = add_model(store)
    c0 = model_classes(store, model.id)[0].pk
    ids = add_images(store, model, c0, [0, 1, 2, 3])
    run_id = _run(store, model)
    _index(store, run_id, c0, {ids[0]: [(5, 3.0), (5, 1.0)], ids[1]: [(4, 2.0), (6, 1.0)], ids[2]: [(6, 9.0), (5, 1.0)],
                               ids[3]: [(5, 1.0), (1, 0.0)]})
    assert queries.token_positions(store, run_id, [c0], 5, limit=2) == [(ids[0], 0), (ids[0], 3), (ids[2], 3)]
    assert queries.token_positions(store, run_id, [c0], 5, limit=9) == [(ids[0], 0), (ids[0], 3), (ids[2], 3), (ids[3], 0)]
    assert queries.token_positions(store, run_id, [c0], 8, limit=9) == []
    assert queries.token_image_count(store, run_id, [c0], 5) == 3
    assert queries.token_image_count(store, run_id, [c0], 8) == 0


def test_token_positions_of_a_concept_read_every_member_class(store):
    model = add_model(store)
    c0, c1 = (c.pk for c in model_classes(store, model.id))
    first, second = add_images(store, model, c0, [0, 1]), add_images(store, model, c1, [0, 1])
    run_id = _run(store, model)
    _index(store, run_id, c0, {first[0]: [(5, 3.0), (2, 1.0)], first[1]: [(4, 2.0), (6, 1.0)]})
    _index(store, run_id, c1, {second[0]: [(6, 9.0), (5, 1.0)], second[1]: [(5, 1.0), (5, 0.0)]})
    assert queries.token_positions(store, run_id, [c1], 5, limit=9) == [(second[0], 3), (second[1], 0), (second[1], 3)]
    both = queries.token_positions(store, run_id, [c0, c1], 5, limit=9)
    assert both == sorted([(first[0], 0), (second[0], 3), (second[1], 0), (second[1], 3)])  # by image id, then rank
    assert queries.token_positions(store, run_id, [c0, c1], 5, limit=2) == both[:2]  # the first two images holding it
    assert queries.token_image_count(store, run_id, [c0, c1], 5) == 3 and queries.token_image_count(store, run_id, [c0], 5) == 1
    assert queries.token_image_count(store, run_id, [c0, c1], 6) == 2 and queries.token_image_count(store, run_id, [], 5) == 0


def test_split_images_and_salient_pair_counts(store):
    model = add_model(store)
    c0, c1 = (c.pk for c in model_classes(store, model.id))
    a = add_images(store, model, c0, [0, 1, 5])
    b = add_images(store, model, c1, [0])
    val = add_images(store, model, c1, [0], split="val")
    run_id = _run(store, model)
    _index(store, run_id, c0, {a[0]: [(5, 1.0), (5, 1.0)], a[5]: [(5, 1.0), (6, 1.0)]})
    _index(store, run_id, c1, {b[0]: [(6, 1.0), (7, 1.0)], val[0]: [(7, 1.0), (7, 1.0)]})
    assert sorted(queries.split_images(store, model.id, "train")) == sorted([(a[0], c0), (a[1], c0), (a[5], c0), (b[0], c1)])
    assert sorted(queries.split_images(store, model.id, "train", below_seed=2, run_id=run_id)) == sorted([(a[0], c0), (b[0], c1)])
    assert sorted(queries.salient_pair_counts(store, run_id, model.id, "train")) == [(c0, 5, 3, 2), (c0, 6, 1, 1), (c1, 6, 1, 1), (c1, 7, 1, 1)]
    assert sorted(queries.salient_pair_counts(store, run_id, model.id, "train", below_seed=1)) == [(c0, 5, 2, 1), (c1, 6, 1, 1), (c1, 7, 1, 1)]
