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
    maps = [(i, np.full(4, value, dtype="<f4").tobytes()) for i in image_ids]
    salient = [index.SalientRow(i, 0, 0, 1, value) for i in image_ids]
    grids = np.array([[10 + k, 2, 1, 1] for k in range(len(image_ids))])  # the k-th image's top token is 10 + k
    return index.insert_batch(store, run_id, class_pk, maps, salient, grids, grids[:, :1])


def test_runs_are_made_once_and_listed_newest_first(store):
    model = add_model(store)
    ce, re = add_extractor(store, model, "ce"), add_extractor(store, model, "re")
    first = index.ensure_run(store, model.id, _key(ce))
    assert index.ensure_run(store, model.id, _key(ce)) == first
    second = index.ensure_run(store, model.id, _key(re, seed=1))
    assert [r.id for r in index.runs(store, model.id)] == [second, first]
    (only,) = index.runs(store, model.id, ce)
    assert only == index.RunInfo(first, ce, "ce", 2, 0.2, 1, "max-abs", "fp32", 0)
    assert index.run_extractor_name(store, second) == "re" and index.run_extractor_name(store, 999) is None


def test_a_batch_is_written_once_and_read_back(store):
    model = add_model(store)
    cls = model_class(store, model)
    ids = list(add_images(store, model, cls, [0, 1, 2]).values())
    run_id = index.ensure_run(store, model.id, _key(add_extractor(store, model)))
    assert _write(store, run_id, cls, ids[:2]) == set(ids[:2])
    assert _write(store, run_id, cls, ids, value=2.0) == {ids[2]}  # stored maps are kept, not counted again
    assert index.indexed_image_ids(store, run_id, ids + [999]) == set(ids)
    assert index.run_image_count(store, run_id, cls) == 3
    maps = index.saliency_maps(store, run_id, [ids[0], ids[2], 999])
    assert {i: np.frombuffer(b, "<f4")[0] for i, b in maps.items()} == {ids[0]: 1.0, ids[2]: 2.0}
    assert images_indexed(store, run_id, "train") == 3
    salient = {t: [(c.count, c.images) for c in classes_using(store, run_id, "train", t, 5, "salient")] for t in (10, 11, 12)}
    assert salient == {10: [(1, 1)], 11: [(1, 1)], 12: [(1, 1)]}  # the second batch counted its third image only
    assert [(c.count, c.images) for c in classes_using(store, run_id, "train", 1, 5, "occurrence")] == [(6, 3)]


def test_newest_map_of_an_image_optionally_of_one_extractor(store):
    model = add_model(store)
    cls = model_class(store, model)
    (image,) = add_images(store, model, cls, [0]).values()
    ce, re = add_extractor(store, model, "ce"), add_extractor(store, model, "re")
    assert index.newest_map(store, image) is None
    old = index.ensure_run(store, model.id, _key(ce))
    new = index.ensure_run(store, model.id, _key(re))
    _write(store, old, cls, [image], 1.0)
    _write(store, new, cls, [image], 2.0)
    assert index.newest_map(store, image)[0] == new
    run_id, blob = index.newest_map(store, image, ce)
    assert run_id == old and np.frombuffer(blob, "<f4")[0] == 1.0
