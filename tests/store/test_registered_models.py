import pytest

from cortex_cli.core.errors import CortexError
from cortex_cli.store import registered_models as models

from store_rows import add_model

pytestmark = pytest.mark.both_backends


def test_insert_list_and_find_models_with_their_classes(store):
    first = add_model(store, "a", n_classes=3)
    second = add_model(store, "b", n_classes=0)
    assert (first.name, first.n_classes, second.n_classes) == ("a", 3, 0)
    assert models.list_models(store) == [first, second]
    assert models.model_named(store, "a") == first and models.model_named(store, "nope") is None
    classes = models.model_classes(store, first.id)
    assert [(c.class_id, c.name, c.synonyms) for c in classes] == [(0, "class0", ("syn0",)), (1, "class1", ("syn1",)), (2, "class2", ("syn2",))]


def test_a_taken_name_is_refused_or_skipped(store):
    first = add_model(store, "a")
    with pytest.raises(CortexError, match="already registered"):
        add_model(store, "a")
    again = models.NewModel(name="a", config_path="x", ckpt_path="y", config_hash="1" * 64, n_embed=8, embed_dim=4, grid=2,
                            image_size=8, labels="")
    assert models.insert_model_if_absent(store, again, [models.NewClass(9, "other")]) is False
    assert models.list_models(store) == [first]
    assert models.insert_model_if_absent(store, models.NewModel(**{**vars(again), "name": "b"}), [models.NewClass(9, "other")])
    assert models.model_named(store, "b").n_classes == 1


def test_set_model_paths(store):
    add_model(store, "a")
    models.set_model_paths(store, "a", "new.yaml", "new.ckpt")
    found = models.model_named(store, "a")
    assert (found.config_path, found.ckpt_path) == ("new.yaml", "new.ckpt")
