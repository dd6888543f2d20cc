"""Only a backend module imports its generator library (read from the sources with `ast`).

taming-transformers: `backends/taming.py` (and `taming_shim.py`, the import fix it alone calls);
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
