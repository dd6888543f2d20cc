"""The docs site builds with `mkdocs build --strict`, fails on a broken link or a missing reference, and covers the code."""

from __future__ import annotations

import html
import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from cortex_cli.api import Workspace
from cortex_cli.cli import app

ROOT = Path(__file__).resolve().parents[1]


def build(root: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    # no -q: it silences the warnings that --strict counts
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def copy_of_the_docs(tmp: Path) -> Path:
    """The files the site is built from, in a scratch directory (the package is imported from the checkout)."""
    root = tmp / "repo"
    root.mkdir()
    for name in ("mkdocs.yml", "README.md", "ARCHITECTURE.md"):
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(ROOT / "docs", root / "docs")
    return root


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    built = build(ROOT, out)
    assert built.returncode == 0, built.stderr[-3000:]
    return out


def _text(page: Path) -> str:
    """A page's visible text, whitespace collapsed (code blocks are split into spans)."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", page.read_text())).split())


def test_the_cli_reference_has_every_command_and_long_flag(site):
    text = _text(site / "cli" / "index.html")

    def commands(group, path=()):
        for name, cmd in group.commands.items():
            yield from commands(cmd, (*path, name)) if hasattr(cmd, "commands") else [((*path, name), cmd)]

    missing = [f"cortex {' '.join(path)} {opt}" for path, cmd in commands(typer.main.get_command(app))
               for opt in [""] + [o for p in cmd.params for o in getattr(p, "opts", ()) if o.startswith("--") and o != "--help"]
               if f"cortex {' '.join(path)}" not in text or (opt and opt not in text)]
    assert missing == []


def test_the_api_reference_documents_every_public_workspace_method(site):
    page = (site / "api" / "index.html").read_text()
    public = [name for name, _ in inspect.getmembers(Workspace) if not name.startswith("_")]
    assert len(public) > 20
    assert [name for name in public if f'id="cortex_cli.api.Workspace.{name}"' not in page] == []


def test_snippets_and_the_tutorial_are_in_the_site(site):
    started = _text(site / "getting-started" / "index.html")
    assert "cortex top-tokens" in started and "from cortex_cli import Workspace" in started and "--8<--" not in started
    assert "Bird's-eye view" in _text(site / "architecture" / "index.html")
    assert (site / "tutorial" / "index.html").is_file()


def test_a_broken_link_fails_the_build(tmp_path):
    root = copy_of_the_docs(tmp_path)
    with (root / "docs" / "concepts.md").open("a") as f:
        f.write("\nSee [the missing page](no-such-page.md).\n")
    built = build(root, tmp_path / "site")
    assert built.returncode != 0 and "no-such-page.md" in built.stdout + built.stderr


def test_a_missing_api_reference_fails_the_build(tmp_path):
    root = copy_of_the_docs(tmp_path)
    with (root / "docs" / "api.md").open("a") as f:
        f.write("\n::: cortex_cli.api.NoSuchThing\n")
    built = build(root, tmp_path / "site")
    assert built.returncode != 0 and "NoSuchThing" in built.stdout + built.stderr


def test_the_readme_is_a_front_page_whose_links_exist():
    readme = (ROOT / "README.md").read_text()
    assert len(readme) <= 15_000, f"README is {len(readme)} characters; move detail into docs/"
    links = [target for target in re.findall(r"\]\(([^)#]+)\)", readme) if not target.startswith(("http://", "https://"))]
    assert links and [target for target in links if not (ROOT / target).exists()] == []


def test_every_path_architecture_names_exists():
    """A reader finds every room at the path ARCHITECTURE.md names: `dir/`, `dir/module.py`, or a module named in its room."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    package = ROOT / "cortex_cli"
    modules = {p.name for p in package.rglob("*.py")}
    missing = []
    for name in sorted(set(re.findall(r"`([\w./-]+(?:\.py|/))`", text))):
        where = [ROOT / name, package / name, ROOT / "tests" / name]
        if "/" not in name.rstrip("/") and name.endswith(".py"):
            found = name in modules or (ROOT / "tests" / name).exists()
        else:
            found = any(p.exists() for p in where)
        if not found:
            missing.append(name)
    assert missing == [], f"ARCHITECTURE.md names paths that do not exist: {missing}"
    assert "cortex_cli/" in text and len(re.findall(r"`[\w./-]+\.py`", text)) > 60
