"""The `cortex` command line: thin commands that parse, call one library function, render."""

from .app import app
from . import models_cmd, generate_cmd, mini_cmd, extractor_cmd, index_cmd, edit_cmd, optimize_cmd, eval_cmd  # noqa: F401,E402
from . import atlas_cmd  # noqa: F401,E402

__all__ = ["app", "main"]


def main() -> None:
    app()
