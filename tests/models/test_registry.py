from cortex_cli.models import registry as model_registry


def test_tiny_model_registers_with_its_classes(store, tiny_model):
    assert (tiny_model.n_embed, tiny_model.embed_dim, tiny_model.grid, tiny_model.image_size) == (64, 16, 16, 64)
    names = [c.name for c in model_registry.classes(store, tiny_model)]
    assert names == ["goldfinch", "water ouzel", "black grouse", "analog clock"]
    assert model_registry.resolve_class(store, tiny_model, "dipper").class_id == 1


def test_is_mini_holds_for_the_bundled_mini_model_only(store, tiny_model):
    model_registry.ensure_bundled(store)
    assert model_registry.get_model(store, model_registry.MINI_NAME).is_mini
    assert not tiny_model.is_mini
    # the mini world's classes make a model mini too (a retrained mini registered under another name)
    assert model_registry.ModelInfo(9, "my-mini", "", "", 128, 32, 16, 64, "mini", 13).is_mini


def test_the_bundled_mini_model_is_found_where_the_package_ships_it():
    from cortex_cli.models.registry import BUNDLED_DIR, MINI_CONFIG, MINI_WEIGHTS

    assert BUNDLED_DIR.parent.name == "cortex_cli" and MINI_CONFIG.is_file() and MINI_WEIGHTS.is_file()
