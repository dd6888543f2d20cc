"""Shared fixtures: state in tmp_path, a tiny random-init taming model, a migrated store.

`store` and `db_url` are SQLite files by default. A module marked `pytestmark =
pytest.mark.both_backends` runs every test that uses them twice, `[sqlite]` and `[postgresql]`,
the latter on a server the tests start from the machine's PostgreSQL binaries (tests/pg_server.py).
`CORTEX_TEST_BACKEND=postgresql pytest ...` runs the other modules' store tests on PostgreSQL too.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from cortex_cli.models import registry as model_registry
from cortex_cli.models.configs import net2net_config, write_config
from cortex_cli.store.database import open_store

BACKENDS = ("sqlite", "postgresql")
TINY_LABELS = "0\tgoldfinch, Carduelis carduelis\n1\twater ouzel, dipper\n2\tblack grouse\n3\tanalog clock\n"


def tiny_config(n_classes: int = 4) -> dict:
    """The tiny random-init model of the tests: 64 px, 16x16 tokens, K=64, a 2-layer GPT."""
    return net2net_config(
        n_classes=n_classes, n_embed=64, embed_dim=16, ch=32, ch_mult=(1, 1, 1), z_channels=16,
        n_layer=2, n_head=2, n_embd=32,
    )


@pytest.fixture(autouse=True)
def cortex_home(tmp_path, monkeypatch) -> Path:
    """Every test gets its own CORTEX_HOME (and so its own default database)."""
    home = tmp_path / "cortex-home"
    monkeypatch.setenv("CORTEX_HOME", str(home))
    monkeypatch.delenv("CORTEX_DB", raising=False)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    return home


@pytest.fixture(scope="session")
def tiny_model_files(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(config.yaml, last.ckpt, labels.tsv) of a tiny taming Net2NetTransformer built by taming itself.

    64x64 px, 16x16 tokens, K=64, d=16, a 2-layer GPT, 4 classes; saved as a Lightning-style
    checkpoint ({'state_dict': ...}).
    """
    from cortex_cli.backends.taming import build_net

    root = tmp_path_factory.mktemp("tiny-model")
    cfg = tiny_config(n_classes=4)
    config_path = write_config(cfg, root / "config.yaml")
    torch.manual_seed(0)
    net = build_net(cfg)
    ckpt_path = root / "last.ckpt"
    torch.save({"state_dict": net.state_dict(), "epoch": 1}, ckpt_path)
    labels = root / "labels.tsv"
    labels.write_text(TINY_LABELS)
    return config_path, ckpt_path, labels


def pytest_configure(config):
    config.addinivalue_line("markers", "both_backends: run the tests that use `store`/`db_url` on SQLite and on PostgreSQL")


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_backends"):
        metafunc.parametrize("backend", BACKENDS)


@pytest.fixture
def backend() -> str:
    """Which database `store`/`db_url` use outside both_backends modules: SQLite, or $CORTEX_TEST_BACKEND."""
    return os.environ.get("CORTEX_TEST_BACKEND", "sqlite")


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL server for this test session (started on first use), or a skip if none is installed."""
    from pg_server import PgServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (pg_config --bindir, /usr/lib/postgresql/*/bin); "
                    "install them (apt-get install postgresql) to run the PostgreSQL variants")
    server = PgServer(bindir)
    try:
        server.start()
        open_store(server.url("cortex_template")).close()  # migrated once; every test database copies it
        yield server
    finally:
        server.stop()


@pytest.fixture
def new_db_url(backend, tmp_path, request):
    """A factory of fresh databases of the test's backend: new_db_url(name) -> URL (PostgreSQL: a copy of the migrated template)."""
    made: list[tuple[object, str]] = []

    def make(name: str = "test") -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / name}.db"
        server = request.getfixturevalue("pg_server")
        made.append((server, server.database()))
        return made[-1][1]

    yield make
    for server, url in made:
        server.drop(url)


@pytest.fixture
def db_url(new_db_url) -> str:
    return new_db_url("test")


@pytest.fixture
def store(db_url):
    s = open_store(db_url)
    yield s
    s.close()


@pytest.fixture
def tiny_model(store, tiny_model_files) -> model_registry.ModelInfo:
    """The tiny model registered as 'tiny' (classes: goldfinch, water ouzel, black grouse, analog clock)."""
    config, ckpt, labels = tiny_model_files
    return model_registry.add_model(store, "tiny", config, ckpt, str(labels))
