"""Every command's --help prints its text as written: a bracketed word such as `[janus]` is not eaten as Rich markup."""

from __future__ import annotations

import inspect
import re

import pytest
import typer.main
from typer.testing import CliRunner

from cortex_cli.cli import app

runner = CliRunner()
BRACKETED = re.compile(r"\\?\[([^\[\]\n]+)\]")  # `[janus]`, or `\[janus]` where the help already escapes it for Rich
# box-drawing characters Rich frames panels with, and a wide terminal, so a wrapped phrase reads as one line again
FRAME = re.compile(r"[\u2500-\u257f]")
ENV = {"COLUMNS": "200", "TERMINAL_WIDTH": "200", "NO_COLOR": "1"}


def _commands(command, path: tuple[str, ...] = ()):
    """(path, click command) of the root, every group and every command under it."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands(typer.main.get_command(app)))


def _texts(command) -> list[str]:
    """The help texts a command's --help shows: its own (docstring or help=) and each parameter's."""
    texts = [command.help or "", command.epilog or ""]
    texts += [getattr(param, "help", None) or "" for param in command.params]
    return [inspect.cleandoc(text) for text in texts if text]


def _bracketed(command) -> set[str]:
    return {f"[{words}]" for text in _texts(command) for words in BRACKETED.findall(text)}


def _flat(text: str) -> str:
    return " ".join(FRAME.sub(" ", text).split())


def test_the_walk_reaches_every_command_and_the_help_texts_hold_brackets():
    assert {("models", "add"), ("eval", "image-level"), ("index",), ("explain",), ()} <= set(COMMANDS)
    assert "[janus]" in _bracketed(COMMANDS[("models", "add")])  # `pip install "cortex-cli[janus]"`
    assert len(COMMANDS) > 25


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=lambda path: " ".join(path) or "cortex")
def test_help_prints_every_bracketed_word_literally(path):
    result = runner.invoke(app, [*path, "--help"], env=ENV)
    assert result.exit_code == 0, result.output
    shown = _flat(result.output)
    missing = sorted(words for words in _bracketed(COMMANDS[path]) if _flat(words) not in shown)
    assert missing == [], f"cortex {' '.join(path)} --help does not print {missing} as written"
    assert "\\[" not in result.output  # an escape never shows


def test_models_add_help_names_the_extra_to_install():
    result = runner.invoke(app, ["models", "add", "--help"], env=ENV)
    assert 'pip install "cortex-cli[janus]"' in _flat(result.output)
