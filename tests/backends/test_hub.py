"""hf:// model files: parsed, resolved offline from a cache laid out as the Hub lays it out, one-line errors."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from cortex_cli.backends import hub
from cortex_cli.core.errors import CortexError

needs_hub = pytest.mark.skipif(importlib.util.find_spec("huggingface_hub") is None, reason="huggingface_hub is not installed")

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path) -> Path:
    """A Hub cache holding own/rep at COMMIT (branch main, tag v1) with weights/c2i.pt."""
    cache = tmp_path / "hub"
    repo = cache / "models--own--rep"
    snapshot = repo / "snapshots" / COMMIT / "weights"
    snapshot.mkdir(parents=True)
    (snapshot / "c2i.pt").write_bytes(b"weights")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "refs" / "v1").write_text(COMMIT)
    return cache


def _one_line(info: pytest.ExceptionInfo) -> str:
    message = str(info.value)
    assert "\n" not in message
    return message


def test_hub_names_parse_into_repo_revision_and_file():
    assert hub.parse_hub_path("hf://own/rep/weights/c2i.pt") == hub.HubFile("own/rep", "weights/c2i.pt")
    assert hub.parse_hub_path("hf://own/rep@v1/c2i.pt") == hub.HubFile("own/rep", "c2i.pt", "v1")
    assert hub.parse_hub_path(Path("hf://own/rep/c2i.pt")).url() == "hf://own/rep/c2i.pt"  # Path keeps one slash
    for bad in ("hf://own/rep", "hf://own//c2i.pt", "hf://own/rep@/c2i.pt"):
        with pytest.raises(CortexError) as info:
            hub.parse_hub_path(bad)
        assert "hf://OWNER/REPO" in _one_line(info)


def test_plain_paths_pass_through(tmp_path):
    assert hub.resolve_path(tmp_path / "c2i.pt") == tmp_path / "c2i.pt"
    assert hub.resolve_path("~/c2i.pt") == Path.home() / "c2i.pt"


@needs_hub
def test_a_cached_file_resolves_offline(hub_cache):
    expected = hub_cache / "models--own--rep" / "snapshots" / COMMIT / "weights" / "c2i.pt"
    for name in ("hf://own/rep/weights/c2i.pt", f"hf://own/rep@{COMMIT}/weights/c2i.pt", "hf://own/rep@v1/weights/c2i.pt"):
        assert hub.resolve_path(name, cache_dir=hub_cache, local_files_only=True) == expected


@needs_hub
def test_the_environment_turns_the_network_off_and_names_the_cache(hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    assert hub.resolve_path(Path("hf://own/rep/weights/c2i.pt")).read_bytes() == b"weights"
    with pytest.raises(CortexError) as info:
        hub.resolve_path("hf://own/rep/weights/missing.pt")
    assert "not in the Hugging Face cache and the network is off" in _one_line(info)


def test_errors_of_the_hub_are_one_line(monkeypatch):
    def raising(name: str):
        def download(**_):
            raise type(name, (Exception,), {})("first line\nsecond line")
        return SimpleNamespace(hf_hub_download=download)

    cases = {"LocalEntryNotFoundError": "the Hub is not reachable", "RepositoryNotFoundError": "no repository 'own/rep'",
             "EntryNotFoundError": "has no file 'c2i.pt'", "RevisionNotFoundError": "has no revision 'v9'",
             "ConnectionError": "could not be fetched: first line"}
    for name, expected in cases.items():
        monkeypatch.setattr(hub, "_huggingface_hub", lambda name=name: raising(name))
        with pytest.raises(CortexError) as info:
            hub.resolve_path("hf://own/rep@v9/c2i.pt", local_files_only=False)
        assert expected in _one_line(info), name


def test_a_missing_huggingface_hub_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as if not installed
    with pytest.raises(CortexError) as info:
        hub.resolve_path("hf://own/rep/c2i.pt")
    assert 'pip install "cortex-cli[hub]"' in _one_line(info)
