"""The `cortex` command line: thin commands that parse, call one library function, render."""

from .app import app
from . import models_cmd  # noqa: F401  (registers commands)

__all__ = ["app", "main"]


def main() -> None:
    app()
