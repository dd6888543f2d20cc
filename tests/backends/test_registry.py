"""Backends resolve by name through the entry-point group `cortex.backends`; another package can add one."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from cortex_cli import backends
from cortex_cli.models import registry as model_registry
from cortex_cli.backends.taming import BACKEND as TAMING
from cortex_cli.core.errors import CortexError


class ToyBackend:
    """A third-party backend as another package would ship it (here: the taming loader under another name)."""

    name = "toy"

    def locate(self, path, config, ckpt):
        return TAMING.locate(None, config, ckpt)

    def describe(self, files):
        return TAMING.describe(files)

    def load(self, files, device):
        return TAMING.load(files, device)


TOY = ToyBackend()


@pytest.fixture
def with_toy(monkeypatch):
    """The entry points as if a package declared `toy = "tests.backends.test_registry:TOY"` (and two broken ones)."""
    installed = list(backends.entry_points(group=backends.GROUP))
    extra = [EntryPoint("toy", "tests.backends.test_registry:TOY", backends.GROUP),
             EntryPoint("misnamed", "tests.backends.test_registry:TOY", backends.GROUP),
             EntryPoint("broken", "no_such_package.backend:BACKEND", backends.GROUP)]
    monkeypatch.setattr(backends, "entry_points", lambda group: [*installed, *extra] if group == backends.GROUP else [])
    monkeypatch.setattr(backends, "_LOADED", {})


def test_cortex_declares_its_own_backends():
    assert {"taming", "janus"} <= set(backends.known_backends())
    assert backends.get_backend("taming") is TAMING and backends.get_backend("taming").name == "taming"


def test_unknown_backend_is_one_line_listing_the_known_ones():
    with pytest.raises(CortexError, match=r"^unknown backend 'nosuch' \(known: .*janus, llamagen, taming\)$"):
        backends.get_backend("nosuch")


def test_a_third_party_backend_registers_and_loads_models(with_toy, store, tiny_model_files):
    config, ckpt, labels = tiny_model_files
    info = model_registry.add_model(store, "via-toy", config, ckpt, str(labels), backend="toy")
    assert info.backend == "toy" and model_registry.get_model(store, "via-toy").backend == "toy"
    model_registry._MODEL_CACHE.clear()
    assert model_registry.load_model(info).grid == 16  # loaded again through the toy entry point


def test_broken_entry_points_are_one_line_errors(with_toy):
    with pytest.raises(CortexError, match="backend 'broken' .* does not load: No module named 'no_such_package'"):
        backends.get_backend("broken")
    with pytest.raises(CortexError, match="is not a cortex backend named 'misnamed'"):
        backends.get_backend("misnamed")
