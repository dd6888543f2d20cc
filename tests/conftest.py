"""Shared fixtures: state in tmp_path, a tiny random-init taming model, a migrated store."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import torch

from cortex_cli import registry
from cortex_cli.model_configs import tiny_config, write_config
from cortex_cli.store.database import open_store

TINY_LABELS = "0\tgoldfinch, Carduelis carduelis\n1\twater ouzel, dipper\n2\tblack grouse\n3\tanalog clock\n"


@pytest.fixture(autouse=True)
def cortex_home(tmp_path, monkeypatch) -> Path:
    """Every test gets its own CORTEX_HOME (and so its own default database)."""
    home = tmp_path / "cortex-home"
    monkeypatch.setenv("CORTEX_HOME", str(home))
    torch.set_num_threads(max(1, torch.get_num_threads()))
    return home


@pytest.fixture(scope="session")
def tiny_model_files(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(config.yaml, last.ckpt, labels.tsv) of a tiny taming Net2NetTransformer built by taming itself.

    64x64 px, 16x16 tokens, K=64, d=16, a 2-layer GPT, 4 classes; saved as a Lightning-style
    checkpoint ({'state_dict': ...}).
    """
    from omegaconf import OmegaConf

    from cortex_cli import taming_shim

    root = tmp_path_factory.mktemp("tiny-model")
    cfg = tiny_config(n_classes=4)
    config_path = write_config(cfg, root / "config.yaml")
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):
        net = taming_shim.install().instantiate_from_config(OmegaConf.create(cfg).model)
    ckpt_path = root / "last.ckpt"
    torch.save({"state_dict": net.state_dict(), "epoch": 1}, ckpt_path)
    labels = root / "labels.tsv"
    labels.write_text(TINY_LABELS)
    return config_path, ckpt_path, labels


@pytest.fixture
def db_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def store(db_url):
    s = open_store(db_url)
    yield s
    s.close()


@pytest.fixture
def tiny_model(store, tiny_model_files) -> registry.ModelInfo:
    """The tiny model registered as 'tiny' (classes: goldfinch, water ouzel, black grouse, analog clock)."""
    config, ckpt, labels = tiny_model_files
    return registry.add_model(store, "tiny", config, ckpt, str(labels))
