"""Only a backend module imports its generator library, and backends/ imports nothing above it (read with `ast`).

taming-transformers: `backends/taming.py` (and `backends/taming_shim.py`, the import fix it alone calls);
transformers: `backends/janus.py`. Dynamic `importlib.import_module("...")` calls count as imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.store.test_layering import PACKAGE, _imports, _sources

# library -> the modules (relative to the package) allowed to import it
OWNERS = {
    "taming": {"backends/taming.py", "backends/taming_shim.py"},
    "cortex_cli.backends.taming_shim": {"backends/taming.py"},
    "transformers": {"backends/janus.py"},
    "huggingface_hub": {"backends/hub.py"},
}


def _dynamic_imports(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """(line, name) of every `import_module("name")` / `importlib.import_module("name")` with a literal name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text() if source is None else source, str(path))):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "import_module":
                found.append((node.lineno, node.args[0].value))
    return found


def _owner_violations() -> list[str]:
    offenders = []
    for path in _sources(PACKAGE):
        rel = path.relative_to(PACKAGE).as_posix()
        for line, name in _imports(path) + _dynamic_imports(path):
            for library, owners in OWNERS.items():
                if (name == library or name.startswith(library + ".")) and rel not in owners:
                    offenders.append(f"cortex_cli/{rel}:{line}: {name} (only {', '.join(sorted(owners))} may import {library})")
    return offenders


def test_only_a_backend_imports_its_generator_library():
    assert _owner_violations() == [], "a generator library imported outside its backend:\n" + "\n".join(_owner_violations())


def test_the_checker_sees_dynamic_imports():
    source = "import importlib\nm = importlib.import_module('transformers.models')\nfrom importlib import import_module\nimport_module('taming.main')\n"
    assert {name for _, name in _dynamic_imports(PACKAGE / "demo.py", source)} == {"transformers.models", "taming.main"}


def _above(sources) -> list[str]:
    """Imports of cortex_cli modules other than backends/ itself and the leaves core/errors.py, core/seeding.py and core/philox.py."""
    allowed = ("cortex_cli.backends", "cortex_cli.core.errors", "cortex_cli.core.seeding", "cortex_cli.core.philox")
    return [f"{path.relative_to(PACKAGE.parent)}:{line}: {name}" for path, source in sources for line, name in _imports(path, source)
            if (name == "cortex_cli" or name.startswith("cortex_cli.")) and not any(name == a or name.startswith(a + ".") for a in allowed)]


def test_backends_import_nothing_above_them_but_the_leaves():
    offenders = _above([(path, None) for path in _sources(PACKAGE / "backends")])
    assert offenders == [], "cortex_cli/backends/ must not import the modules that use it:\n" + "\n".join(offenders)


def test_the_backend_checker_sees_an_import_from_above():
    taming = PACKAGE / "backends" / "taming.py"
    assert _above([(taming, "from ..models.registry import ModelInfo\nfrom . import taming_shim\nfrom ..core.errors import CortexError\n")]) \
        == ["cortex_cli/backends/taming.py:1: cortex_cli.models.registry", "cortex_cli/backends/taming.py:1: cortex_cli.models.registry.ModelInfo"]
