"""Only `cortex_cli/store/` speaks SQL, and `store/` depends on nothing above it (read from the sources with `ast`)."""

from __future__ import annotations

import ast
from pathlib import Path

import cortex_cli

PACKAGE = Path(cortex_cli.__file__).resolve().parent
STORE = PACKAGE / "store"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a source file (or `source` read as if it were there).

    Relative imports are resolved.

    `from X import Y` yields both X and X.Y, so that `from .store import schema` is seen as `cortex_cli.store.schema`.
    """
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text() if source is None else source, str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return found


def _sources(root: Path):
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _is_sql(name: str) -> bool:
    return name == "sqlalchemy" or name.startswith("sqlalchemy.") or name == "cortex_cli.store.schema" or name.startswith("cortex_cli.store.schema.")


def test_only_store_imports_sqlalchemy_or_the_schema():
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {name}"
        for path in _sources(PACKAGE) if STORE not in path.parents
        for line, name in _imports(path) if _is_sql(name)
    ]
    assert offenders == [], "SQL outside cortex_cli/store/ (move it into a store module):\n" + "\n".join(offenders)


def test_store_imports_nothing_above_it_but_errors():
    allowed = ("cortex_cli.store", "cortex_cli.core.errors")
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {name}"
        for path in _sources(STORE)
        for line, name in _imports(path)
        if (name == "cortex_cli" or name.startswith("cortex_cli.")) and not any(name == a or name.startswith(a + ".") for a in allowed)
    ]
    assert offenders == [], "cortex_cli/store/ must not import the modules that use it:\n" + "\n".join(offenders)


def test_the_checker_sees_relative_and_aliased_imports():
    located = PACKAGE / "evaluation" / "common.py"  # two levels down: `..store` is cortex_cli.store
    source = "from ..store import schema\nfrom ..store.schema import ImageRow\nimport sqlalchemy.orm as orm\nfrom . import common\n"
    names = {name for _, name in _imports(located, source)}
    assert {"cortex_cli.store.schema", "cortex_cli.store.schema.ImageRow", "sqlalchemy.orm", "cortex_cli.evaluation.common"} <= names
    assert _is_sql("cortex_cli.store.schema") and _is_sql("sqlalchemy.orm") and not _is_sql("cortex_cli.store.database")
