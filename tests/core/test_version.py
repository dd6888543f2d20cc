"""The version the package reports is the one pyproject.toml installs."""

from __future__ import annotations

import tomllib
from pathlib import Path

import cortex_cli
from cortex_cli.core.version import __version__


def test_the_package_version_is_pyprojects():
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert __version__ == pyproject["project"]["version"]
    assert cortex_cli.__version__ == __version__
