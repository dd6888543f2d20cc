"""The CLI is the API's client: no module under cli/ runs the library's work itself (read from the sources with `ast`)."""

from __future__ import annotations

from tests.store.test_layering import PACKAGE, _imports, _sources

CLI = PACKAGE / "cli"
# modules that do the work: a command reaches them only through `Workspace` (cortex_cli/api.py)
WORKERS = ("core.distributed", "images.generation", "index.build", "index.rankings", "index.explain", "search.edit",
           "search.concept_search.search_concept", "models.registry", "models.class_subsets", "extractors.registry",
           "extractors.training.train_extractor", "evaluation.run_all", "atlas.build", "miniworld.training",
           "miniworld.mini_report", "judges", "store")
ALLOWED = {("cli/app.py", "cortex_cli.store.database"), ("cli/app.py", "cortex_cli.store.database.lost_database")}  # turning a lost connection into one line is rendering


def _violations(sources, source: str | None = None) -> list[str]:
    found = []
    for path in sources:
        rel = path.relative_to(PACKAGE).as_posix()
        for line, name in _imports(path, source):
            for worker in WORKERS:
                full = f"cortex_cli.{worker}"
                if (name == full or name.startswith(full + ".")) and (rel, name) not in ALLOWED:
                    found.append(f"cortex_cli/{rel}:{line}: {name}")
    return found


def test_commands_reach_the_library_only_through_the_workspace():
    assert _violations(_sources(CLI)) == []
    assert any(name == "cortex_cli.api.Workspace" for _, name in _imports(CLI / "app.py"))


def test_the_checker_sees_a_command_that_orchestrates():
    source = "from ..core.distributed import init_from_env\nfrom ..models import registry\nfrom ..store.database import open_store\n"
    found = _violations([CLI / "index_cmd.py"], source)
    assert [v.split(": ")[1] for v in found] == ["cortex_cli.core.distributed", "cortex_cli.core.distributed.init_from_env",
                                                 "cortex_cli.models.registry", "cortex_cli.store.database",
                                                 "cortex_cli.store.database.open_store"]
    assert _violations([CLI / "app.py"], "from ..store.database import lost_database\n") == []
