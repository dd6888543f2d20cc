"""MkDocs hook: the CLI reference page is generated from the Typer application at build time."""

from __future__ import annotations

import re

MARKER = "<!-- cli-reference -->"


def _commands(group, path=()):
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def _cell(text) -> str:
    return " ".join(str(text).split()).replace("|", "\\|") if text not in (None, "") else ""


def _default(param) -> str:
    if param.is_flag if hasattr(param, "is_flag") else False:
        return ""
    default = param.default
    if default is None or callable(default) or getattr(default, "__class__", None).__name__ == "Sentinel":
        return ""
    return f"`{default}`" if str(default) != "" else "`''`"


def _help(text: str) -> str:
    """A command's docstring as markdown: paragraphs kept, `Example:` lines as shell code."""
    out, examples = [], []
    for block in (text or "").strip().split("\n\n"):
        lines = [line.strip() for line in block.splitlines()]
        prose = [line for line in lines if not re.match(r"Examples?:", line)]
        examples += [re.sub(r"^Examples?:\s*", "", line) for line in lines if re.match(r"Examples?:", line)]
        if prose:
            out.append(" ".join(prose).replace("*", "\\*"))
    if examples:
        out.append("```bash\n" + "\n".join(e for part in examples for e in part.split(" ;  ")) + "\n```")
    return "\n\n".join(out)


def reference() -> str:
    import typer.main

    from cortex_cli.cli import app

    root = typer.main.get_command(app)
    sections = ["## Global options\n\n`cortex [--db URL] [--device DEVICE] COMMAND ...`\n\n" + _options(root.params)]
    for path, cmd in _commands(root):
        args = " ".join(p.name.upper() for p in cmd.params if p.param_type_name == "argument")
        usage = f"`cortex {' '.join(path)} [OPTIONS]{' ' + args if args else ''}`"
        arguments = [p for p in cmd.params if p.param_type_name == "argument"]
        arg_table = ""
        if arguments:
            arg_table = "| argument | help |\n|---|---|\n" + "".join(
                f"| `{p.name.upper()}` | {_cell(getattr(p, 'help', ''))} |\n" for p in arguments) + "\n"
        sections.append(f"## cortex {' '.join(path)}\n\n{usage}\n\n{_help(cmd.help)}\n\n{arg_table}{_options(cmd.params)}")
    return "\n\n".join(sections) + "\n"


def _options(params) -> str:
    rows = [p for p in params if p.param_type_name == "option" and "--help" not in p.opts]
    if not rows:
        return ""
    return "| option | default | help |\n|---|---|---|\n" + "".join(
        f"| {', '.join(f'`{o}`' for o in p.opts)} | {_default(p)} | {_cell(p.help)} |\n" for p in rows)


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri == "cli.md":
        if MARKER not in markdown:
            raise ValueError(f"docs/cli.md lost its {MARKER} marker")
        return markdown.replace(MARKER, reference())
    return markdown
