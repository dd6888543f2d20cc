"""Tests mirror the package: every module cortex_cli/<sub>/<mod>.py has tests/<sub>/test_<mod>.py (issue 21).

A reader looking for the tests of a module finds them at one path, and a new module without tests fails here.
Package plumbing (`__init__.py`, `__main__.py`) and directories of data (`data/`, `bundled/`, private `_*`) have
no tests of their own.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cortex_cli"
TESTS = Path(__file__).resolve().parent

NOT_MODULES = {"__init__.py", "__main__.py"}
DATA_DIRS = {"data", "bundled"}

# covered by tests/cli/ and tests/test_api.py (issue 21)
SKIPPED = ("cli/", "api.py")

# Modules that cannot have a test file of their own, each with the reason. None today: every module's
# behaviour can be exercised on the tiny model, a SQLite file or plain tensors. An entry needs a reason a
# reviewer accepts ("it is hard" is not one).
ALLOWED: dict[str, str] = {}

# TEMPORARY: modules whose tests are being moved to their mirrored path by work in progress. Empty: keep it so.
TEMPORARY: dict[str, str] = {}


def _modules() -> list[str]:
    """Every module of the package as a path relative to cortex_cli/ (posix)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if path.name in NOT_MODULES or any(p in DATA_DIRS or p.startswith(("_", ".")) for p in rel.parts[:-1]):
            continue
        found.append(rel.as_posix())
    return found


def mirrored(module: str) -> Path:
    """tests/<sub>/test_<mod>.py of cortex_cli/<sub>/<mod>.py."""
    rel = Path(module)
    return TESTS / rel.parent / f"test_{rel.name}"


def test_mirroring_maps_a_module_to_its_test_path():
    assert mirrored("store/bulk.py") == TESTS / "store" / "test_bulk.py"
    assert mirrored("core/errors.py") == TESTS / "core" / "test_errors.py"
    assert "store/bulk.py" in _modules() and "core/errors.py" in _modules()
    assert not [m for m in _modules() if m.endswith("__init__.py") or m.startswith(("data/", "bundled/"))]


def test_every_module_has_its_mirrored_test_file():
    missing = [m for m in _modules()
               if not m.startswith(SKIPPED) and m not in ALLOWED and m not in TEMPORARY and not mirrored(m).is_file()]
    assert not missing, "modules without a test file at the mirrored path: " + ", ".join(
        f"cortex_cli/{m} -> {mirrored(m).relative_to(TESTS.parent)}" for m in missing)


def test_the_exception_lists_are_not_stale():
    modules = set(_modules())
    for listed, name in ((ALLOWED, "ALLOWED"), (TEMPORARY, "TEMPORARY")):
        gone = [m for m in listed if m not in modules]
        assert not gone, f"{name} lists modules that no longer exist: {gone}"
        tested = [m for m in listed if mirrored(m).is_file()]
        assert not tested, f"{name} lists modules that now have their test file; remove them from the list: {tested}"
        assert all(reason.strip() for reason in listed.values()), f"every {name} entry says why"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere (inside functions too; `if TYPE_CHECKING:` blocks aside)."""
    import ast

    sources = {_module_name(p): p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    graph: dict[str, set[str]] = {m: set() for m in sources}
    for module, path in sources.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        skipped = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
                   for n in ast.walk(block)}
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
                target = ".".join(base + ([node.module] if node.module else [])) if node.level else (node.module or "")
                names = [f"{target}.{a.name}" if f"{target}.{a.name}" in sources else target for a in node.names]
            else:
                continue
            for name in names:
                while name and name not in sources:
                    name = name.rpartition(".")[0]
                if name and name != module:
                    graph[module].add(name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_anywhere_in_the_package():
    graph = _import_graph()
    assert {"cortex_cli.core.errors", "cortex_cli.models.subjects"} <= graph["cortex_cli.api"]  # relative imports, resolved
    assert "cortex_cli.evaluation.registry" in graph["cortex_cli.api"]  # an import inside a method counts
    assert _cycles(graph) == []
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the checker sees one


def test_the_tree_shows_the_stages():
    """At most 8 modules directly in cortex_cli/ (the rest live in their stage's folder), no function over 100 lines."""
    import ast

    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 8, top
    long = [f"{p.relative_to(PACKAGE)}:{n.name} ({n.end_lineno - n.lineno + 1} lines)" for p in PACKAGE.rglob("*.py")
            for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > 100]
    assert long == []


def test_pyproject_ships_every_subpackage():
    """A wheel (not an editable install) holds exactly the packages pyproject names: a new stage folder must be listed."""
    import tomllib

    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(("cortex_cli", *p.parent.relative_to(PACKAGE).parts)) for p in PACKAGE.rglob("__init__.py")}
    on_disk = {name.removesuffix(".") for name in on_disk}
    assert on_disk - listed == set(), "pyproject.toml's [tool.setuptools] packages misses these"
