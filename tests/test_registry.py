from cortex_cli import registry


def test_tiny_model_registers_with_its_classes(store, tiny_model):
    assert (tiny_model.n_embed, tiny_model.embed_dim, tiny_model.grid, tiny_model.image_size) == (64, 16, 16, 64)
    names = [c.name for c in registry.classes(store, tiny_model)]
    assert names == ["goldfinch", "water ouzel", "black grouse", "analog clock"]
    assert registry.resolve_class(store, tiny_model, "dipper").class_id == 1
