"""The `cortex` command line: thin commands that parse, make one `Workspace` call (`cortex_cli.api`), and render."""

from .app import app
from . import models_cmd, generate_cmd, mini_cmd, extractor_cmd, index_cmd, query_cmd, explain_cmd, demo_cmd  # noqa: F401,E402
from . import edit_cmd, optimize_cmd, eval_cmd, atlas_cmd, concepts_cmd  # noqa: F401,E402

__all__ = ["app", "main"]


def main() -> None:
    app()
