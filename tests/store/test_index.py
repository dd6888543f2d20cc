import numpy as np
import pytest

from cortex_cli.store import index
from cortex_cli.store.registered_models import model_classes
from cortex_cli.store.run_counts import classes_using, images_indexed

from store_rows import add_extractor, add_images, add_model

pytestmark = pytest.mark.both_backends


def _key(extractor_id: int, seed: int = 0) -> index.RunKey:
    return index.RunKey(extractor_id, samples=2, alpha=0.2, top_n=1, reduce="max-abs", precision="fp32", seed=seed)


def model_class(store, model) -> int:
    return model_classes(store, model.id)[0].pk


def _write(store, run_id, class_pk, image_ids, value=1.0):
    """Each image's map all `value`, one top row (rank 0, position 0, token 1); the k-th image's top token counts as 10 + k."""
    ids, n = np.array(image_ids, dtype=np.int64), len(image_ids)
    grids = np.array([[10 + k, 2, 1, 1] for k in range(n)])
    rows = index.IndexRows(
        class_pk=class_pk, image_ids=ids, maps=[np.full(4, value, dtype="<f4").tobytes()] * n, grids=grids, top=grids[:, :1],
        salient_image_ids=ids, ranks=np.zeros(n, np.int64), positions=np.zeros(n, np.int64), tokens=np.ones(n, np.int64),
        tsv=np.full(n, value, np.float64),
    )
    return index.write_index(store, run_id, [rows])


def test_runs_are_made_once_and_listed_newest_first(store):
    model = add_model(store)
    ce, re = add_extractor(store, model, "ce"), add_extractor(store, model, "re")
    first = index.ensure_run(store, model.id, _key(ce))
    assert index.ensure_run(store, model.id, _key(ce)) == first
    second = index.ensure_run(store, model.id, _key(re, seed=1))
    assert [r.id for r in index.runs(store, model.id)] == [second, first]
    (only,) = index.runs(store, model.id, ce)
    assert only == index.RunInfo(ce, 2, 0.2, 1, "max-abs", "fp32", 0, id=first, extractor="ce")
    assert index.run_extractor_name(store, second) == "re" and index.run_extractor_name(store, 999) is None


def test_a_batch_is_written_once_and_read_back(store):
    model = add_model(store)
    cls = model_class(store, model)
    ids = list(add_images(store, model, cls, [0, 1, 2]).values())
    run_id = index.ensure_run(store, model.id, _key(add_extractor(store, model)))
    assert _write(store, run_id, cls, ids[:2]) == set(ids[:2])
    assert _write(store, run_id, cls, ids, value=2.0) == {ids[2]}  # stored maps are kept, not counted again
    assert index.indexed_image_ids(store, run_id, ids + [999]) == set(ids)
    maps = index.saliency_maps(store, run_id, [ids[0], ids[2], 999])
    assert {i: np.frombuffer(b, "<f4")[0] for i, b in maps.items()} == {ids[0]: 1.0, ids[2]: 2.0}
    assert images_indexed(store, run_id, "train") == 3
    salient = {t: [(c.count, c.images) for c in classes_using(store, run_id, "train", t, 5, "salient")] for t in (10, 11, 12)}
    assert salient == {10: [(1, 1)], 11: [(1, 1)], 12: [(1, 1)]}  # the second batch counted its third image only
    assert [(c.count, c.images) for c in classes_using(store, run_id, "train", 1, 5, "occurrence")] == [(6, 3)]
