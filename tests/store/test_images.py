import pytest
from sqlalchemy import text

from cortex_cli.store import images
from cortex_cli.store.registered_models import model_classes

from store_rows import add_images, add_model, grid_blob

pytestmark = pytest.mark.both_backends


def test_insert_images_counts_only_the_rows_it_inserted(store):
    model = add_model(store)
    group = images.ImageGroup(model.id, model_classes(store, model.id)[0].pk, "train", "s")
    asked = []

    def stats(inserted):
        asked.append(list(inserted))
        return {3: (2 * len(inserted), len(inserted))}

    ours, theirs = images.insert_images(store, group, {0: grid_blob(3, 3, 1, 1), 1: grid_blob(3, 3, 2, 2)}, stats)
    assert sorted(ours) == [0, 1] and theirs == {}
    ours2, theirs2 = images.insert_images(store, group, {1: grid_blob(5, 5, 5, 5), 2: grid_blob(3, 3, 0, 0)}, stats)
    assert list(ours2) == [2] and theirs2 == {1: (ours[1], grid_blob(3, 3, 2, 2))}  # the stored row wins
    assert asked == [[0, 1], [2]]
    assert images.stored_seeds(store, group, [0, 2, 7]) == {0: (ours[0], grid_blob(3, 3, 1, 1)), 2: (ours2[2], grid_blob(3, 3, 0, 0))}
    assert images.stored_seeds(store, group, []) == {}
    with store.engine.connect() as conn:  # the counters added up over both batches
        assert conn.execute(text("SELECT count, n_images FROM token_counts WHERE token = 3")).one() == (6, 3)


def test_reads_by_id_leave_out_other_models_images(store):
    model, other = add_model(store, "a"), add_model(store, "b")
    a0, a1 = model_classes(store, model.id)
    mine = add_images(store, model, a1.pk, [4, 5], split="val", sampler="top_k=5")
    theirs = add_images(store, other, model_classes(store, other.id)[0].pk, [4])
    ids = [mine[5], theirs[4], mine[4], mine[5]]
    assert images.token_blobs(store, model.id, ids) == {mine[4]: grid_blob(1, 4, 1, 1), mine[5]: grid_blob(1, 5, 1, 1)}
    assert images.identities(store, model.id, ids) == {
        mine[4]: images.ImageIdentity(1, "val", 4, "top_k=5"), mine[5]: images.ImageIdentity(1, "val", 5, "top_k=5")}
    assert sorted(images.iter_token_blobs(store, [mine[4], theirs[4]])) == sorted([grid_blob(1, 4, 1, 1), grid_blob(1, 4, 1, 1)])
    assert images.image_class_id(store, model.id, mine[4]) == 1
    assert images.image_class_id(store, model.id, theirs[4]) is None
    assert images.list_images(store, model.id) == [(mine[4], 1, 4), (mine[5], 1, 5)]
    assert images.list_images(store, model.id, a0.pk) == [] and images.list_images(store, model.id, a1.pk, "train") == []


def test_images_of_seeds_spans_every_class(store):
    model = add_model(store, n_classes=2)
    c0, c1 = model_classes(store, model.id)
    first = add_images(store, model, c0.pk, [0, 1, 2])
    second = add_images(store, model, c1.pk, [0, 1], sampler="other")
    found = sorted(images.images_of_seeds(store, model.id, "train", ["s", "other"], [0, 1]))
    assert found == sorted([(c0.pk, first[0]), (c0.pk, first[1]), (c1.pk, second[0]), (c1.pk, second[1])])
    assert images.images_of_seeds(store, model.id, "val", ["s"], [0]) == []
