"""The Typer application, its global options (checked before any command runs), and the one place errors are printed."""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import typer
from rich.markup import escape
from rich.text import Text
from typer import _click
from typer.core import TyperGroup

from ..api import Workspace
from ..core.errors import CortexError, first_line
from ..store.database import lost_database
from .render import err_console


def literal_help(command: Any) -> None:
    """Escape the Rich markup in the help of `command` and every command under it, so that help prints as written.

    Typer renders help texts as Rich markup (its rich_markup_mode "rich"), where `[janus]` is a style tag and
    vanishes from `pip install "cortex-cli[janus]"`; escaped, every bracket prints literally.
    """
    if getattr(command, "rich_markup_mode", None) == "rich":
        for owner in (command, *command.params):
            for attr in ("help", "short_help", "epilog"):
                if getattr(owner, attr, None):
                    setattr(owner, attr, escape(getattr(owner, attr)))
    for sub in getattr(command, "commands", {}).values():
        literal_help(sub)


class OneLineErrors(TyperGroup):
    """The root group: a usage error (unknown option, bad value, missing argument) is one line on stderr, exit 2.

    Every help text under it prints as written (`literal_help`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        literal_help(self)

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _click.exceptions.ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:  # `cortex eval`: the group's help, as click shows it
                _click.echo(ctx.get_help())
                sys.exit(2)
            where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            fail(" ".join(exc.format_message().split()) + where)
            sys.exit(exc.exit_code)
        except typer.Abort:
            err_console.print("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="cortex",
    cls=OneLineErrors,
    help="CORTEX: which codebook tokens of a VQGAN carry a concept, and edits that change them.\n\n"
    "Runs on the bundled mini model out of the box; register the ImageNet VQGAN with `cortex models add`.\n"
    "The same in Python: `from cortex_cli import Workspace`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@dataclass
class AppState:
    """The global options, as the workspace every command calls."""

    workspace: Workspace
    exits: list[Callable[[], None]] = field(default_factory=list)


def workspace(ctx: typer.Context) -> Workspace:
    """The workspace of this invocation (the global --db and --device, already checked)."""
    root = ctx.find_root()
    if not isinstance(root.obj, AppState):  # a command invoked without the callback (tests calling it directly)
        root.obj = AppState(Workspace())
    return root.obj.workspace


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `error: <the message's first line>` on stderr (as plain text: a '[' in it prints as written)."""
    err_console.print(Text.assemble(("error: ", "bold red"), first_line(CortexError(message))), highlight=False, soft_wrap=True)
    return typer.Exit(code)


def sub_command(group: typer.Typer, name: str | None = None, **kwargs: Any) -> Callable:
    """`group.command` whose errors are one line on stderr: CortexError and a lost database exit 1, Ctrl-C 130.

    The workspace is closed when the command ends (under torchrun: after every rank is done).
    """

    def decorator(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(*args: Any, **kw: Any) -> Any:
            ws = workspace(kw["ctx"])  # every command takes `ctx: typer.Context`
            try:
                with ws:
                    return func(*args, **kw)
            except CortexError as exc:
                raise fail(str(exc)) from None
            except KeyboardInterrupt:
                err_console.print("interrupted; finished work is saved, rerun the same command to resume")
                raise typer.Exit(130) from None
            except Exception as exc:
                lost = lost_database(exc)
                if lost is None:
                    raise
                raise fail(str(lost)) from None

        return group.command(name, **kwargs)(wrapper)

    return decorator


def command(name: str | None = None, **kwargs: Any) -> Callable:
    """A top-level `cortex` command (see `sub_command`)."""
    return sub_command(app, name, **kwargs)


@app.callback()
def main_options(
    ctx: typer.Context,
    db: str = typer.Option(None, "--db", help="SQLAlchemy database URL (default: $CORTEX_DB, else sqlite file cortex.db in $CORTEX_HOME)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N (under torchrun: auto and cuda mean cuda:LOCAL_RANK)."),
) -> None:
    """Global options, checked before any command runs; each command that draws random numbers has its own --seed."""
    try:
        ctx.obj = AppState(Workspace(db=db, device=device))
    except CortexError as exc:
        raise fail(str(exc)) from None
