"""docs/tutorial.ipynb runs from a fresh home and prints what its stored outputs (the docs site's) show.

The notebook is stored with its outputs. This test executes a copy in a temporary directory with a fresh
$CORTEX_HOME (on the CPU, as the stored outputs were made) and compares, cell by cell, everything printed
to stdout and every text/plain output with the stored ones; pictures are not compared byte for byte, but
the same cells must draw them. A stale notebook (an API change that alters a number, a table, a printed
path) fails here: re-execute it and store it again (the notebook's outputs are what the docs show).
"""

from __future__ import annotations

import ast
import copy
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import nbclient
import nbformat
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "tutorial.ipynb"
INSTALL = re.compile(r"""pip install -e ["']\.\[([\w,-]+)\]["']""")  # pip install -e ".[notebook]"
# Floats are compared to 6 significant digits, so that a last-bit difference of another CPU's arithmetic
# does not fail the test; a changed count, token or rounded table value still does.
LONG_FLOAT = re.compile(r"-?\d+\.\d{7,}(?:e[-+]?\d+)?")


def _stable(text: str) -> str:
    return LONG_FLOAT.sub(lambda m: f"{float(m.group()):.6g}", text)


def _outputs(cell) -> dict:
    """What a code cell showed: its stdout (joined: how prints split into stream outputs is timing), its
    text/plain outputs in order, and how many pictures."""
    outputs = cell.get("outputs", [])
    return {
        "stdout": _stable("".join(o["text"] for o in outputs if o["output_type"] == "stream" and o["name"] == "stdout")),
        "text/plain": [_stable(o["data"]["text/plain"]) for o in outputs if "text/plain" in o.get("data", {})],
        "pictures": sum("image/png" in o.get("data", {}) for o in outputs),
    }


def _execute(nb, cwd: Path, home: Path, monkeypatch):
    monkeypatch.setenv("CORTEX_HOME", str(home))  # the kernel inherits the environment
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # the stored outputs are the CPU's
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    fresh = copy.deepcopy(nb)
    for cell in fresh.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbclient.NotebookClient(fresh, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return fresh


def test_the_stored_notebook_has_outputs_and_no_errors():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code), "store the notebook executed (the docs site shows its outputs)"
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "store it executed once, top to bottom"
    for cell in code:
        for out in cell.outputs:
            assert out["output_type"] != "error", f"a stored error output: {out.get('ename')}: {out.get('evalue')}"
            assert not (out["output_type"] == "stream" and out["name"] == "stderr"), f"stored stderr: {out['text']}"
        assert "execution" not in cell.metadata, "strip the execution timestamps from the cells' metadata"
    assert sum(_outputs(c)["pictures"] for c in code) >= 3  # the bar chart, Figure 2, the edit's strip


def test_the_notebook_runs_from_a_fresh_home_and_shows_its_stored_outputs(tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    work = tmp_path / "work"
    work.mkdir()
    fresh = _execute(nb, work, tmp_path / "home", monkeypatch)

    stored = [c for c in nb.cells if c.cell_type == "code"]
    ran = [c for c in fresh.cells if c.cell_type == "code"]
    assert len(ran) == len(stored)
    for i, (old, new) in enumerate(zip(stored, ran)):
        errors = [o for o in new.outputs if o["output_type"] == "error"]
        assert not errors, f"code cell {i} raised {errors[0]['ename']}: {errors[0]['evalue']}"
        assert _outputs(new) == _outputs(old), f"code cell {i}'s outputs differ from the stored ones:\n{old.source}"
    assert (work / "tutorial-out" / "atlas" / "index.html").is_file()  # outputs go under the working directory


def _imported_distributions(nb) -> dict[str, str]:
    """top-level module -> its distribution, of every third-party module the notebook's code cells import."""
    modules = set()
    for cell in (c for c in nb.cells if c.cell_type == "code"):
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules.add(node.module.split(".")[0])
    owners = importlib.metadata.packages_distributions()
    third_party = sorted(m for m in modules - set(sys.stdlib_module_names) if m != "cortex_cli")
    return {m: canonicalize_name(owners[m][0]) for m in third_party}


def test_the_notebook_states_an_install_line_whose_extra_provides_what_it_imports():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    intro = nb.cells[0]
    assert intro.cell_type == "markdown"
    stated = INSTALL.findall(intro.source)
    assert stated, 'the first cell states how to install what the notebook needs: pip install -e ".[EXTRA]"'
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [extra for line in stated for extra in line.split(",")]
    assert set(extras) <= set(project["optional-dependencies"]), f"no such extra: {extras}"
    required = [Requirement(r) for r in project["dependencies"]]
    required += [Requirement(r) for extra in extras for r in project["optional-dependencies"][extra]]
    provided = {canonicalize_name(r.name) for r in required}
    imported = _imported_distributions(nb)
    assert {"pandas", "matplotlib", "IPython"} <= set(imported)  # the walk sees the notebook's imports
    assert {m: d for m, d in imported.items() if d not in provided} == {}, "the stated extra must provide every import"
    # and what runs it, as this module runs it: a Jupyter kernel and nbclient (`jupyter execute`)
    assert {"ipykernel", "nbclient"} <= provided
    # the docs page that links the notebook states the same line
    assert any(f'pip install -e ".[{extra}]"' in (ROOT / "docs" / "getting-started.md").read_text() for extra in extras)
