"""The Typer application, its global options, and the one place CortexError becomes exit 1."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import typer

from ..errors import CortexError
from ..extractors.registry import ensure_bundled_extractors
from ..model_registry import ensure_bundled
from ..environment import default_db_url, resolve_device
from ..store.database import lost_database, open_store
from .render import err_console

app = typer.Typer(
    name="cortex",
    help="CORTEX: which codebook tokens of a VQGAN carry a concept, and edits that change them.\n\n"
    "Runs on the bundled mini model out of the box; register the ImageNet VQGAN with `cortex models add`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@dataclass
class AppState:
    """Global options shared by every command."""

    db_url: str | None = None
    device: str = "auto"
    _store: Any = field(default=None, repr=False)

    def store(self):
        """The opened (and migrated) database; the bundled mini model is registered on first use."""
        if self._store is None:
            self._store = open_store(self.db_url or default_db_url())
            ensure_bundled(self._store)
            ensure_bundled_extractors(self._store)
        return self._store

    def torch_device(self) -> torch.device:
        return resolve_device(self.device)


def state(ctx: typer.Context) -> AppState:
    root = ctx.find_root()
    if not isinstance(root.obj, AppState):
        root.obj = AppState()
    return root.obj


def sub_command(group: typer.Typer, name: str | None = None, **kwargs: Any) -> Callable:
    """`group.command` that turns CortexError into one line on stderr and exit code 1."""

    def decorator(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(*args: Any, **kw: Any) -> Any:
            try:
                return func(*args, **kw)
            except CortexError as exc:
                err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
                raise typer.Exit(1) from None
            except KeyboardInterrupt:
                err_console.print("interrupted; finished work is saved, rerun the same command to resume")
                raise typer.Exit(130) from None
            except Exception as exc:
                lost = lost_database(exc)
                if lost is None:
                    raise
                err_console.print(f"[bold red]error:[/] {lost}", highlight=False, soft_wrap=True)
                raise typer.Exit(1) from None

        return group.command(name, **kwargs)(wrapper)

    return decorator


def command(name: str | None = None, **kwargs: Any) -> Callable:
    """A top-level `cortex` command (see `sub_command`)."""
    return sub_command(app, name, **kwargs)


@app.callback()
def main_options(
    ctx: typer.Context,
    db: str = typer.Option(None, "--db", help="SQLAlchemy database URL (default: sqlite file cortex.db in $CORTEX_HOME)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N"),
) -> None:
    """Global options; each command that draws random numbers has its own --seed."""
    ctx.obj = AppState(db_url=db, device=device)
