"""Fixtures shared by the evaluation tests."""

from __future__ import annotations

import pytest

from cortex_cli.models import registry as model_registry

from eval_helpers import register_small_extractor
from index_helpers import store_random_images


@pytest.fixture
def setup(store, tiny_model, tmp_path):
    register_small_extractor(store, tiny_model, tmp_path, "ce", "ce")
    classes = model_registry.classes(store, tiny_model)[:2]
    for cls in classes:
        store_random_images(store, tiny_model, cls, 2, split="test", vocab=40)
    for cls in model_registry.classes(store, tiny_model):  # the specific baseline compares every class
        store_random_images(store, tiny_model, cls, 3, split="train", vocab=40)
    return tiny_model, tuple(c.name for c in classes)
