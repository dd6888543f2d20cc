"""render.table: numbers right-aligned and never cut, cells printed as written, wide tables folded to the console."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from typer.testing import CliRunner

from cortex_cli.cli import app, render

from index_helpers import store_random_images


def _printed(title, columns, rows, width=80) -> list[str]:
    out = Console(file=io.StringIO(), width=width, record=True)
    render.table(title, columns, rows, out=out)
    return out.export_text().splitlines()


def _row(lines: list[str], first_cell: str) -> str:
    return next(line for line in lines if line.startswith(f"│ {first_cell} "))


def test_numeric_columns_are_right_aligned_and_labels_left():
    lines = _printed("t", ["name", "count", "P"], [["a", 7, 0.5], ["longer name", 1234, "n/a"], ["b", "-", 0.25]])
    assert _row(lines, "a") == "│ a           │     7 │  0.5 │"
    assert _row(lines, "longer") == "│ longer name │  1234 │  n/a │"
    assert "┃ name        ┃ count ┃    P ┃" in lines  # headers follow their column
    # one word among the numbers makes the column a label column again
    assert _row(_printed("t", ["x"], [["12"], ["twelve"]]), "12") == "│ 12     │"


@pytest.mark.parametrize("cell", ["-0.300 / 0.280", "[+0.103, +0.213]", "42.0%", "1e-05", "+0.050"])
def test_cells_of_several_numbers_count_as_numbers(cell):
    lines = _printed(None, ["k", "value"], [["a", cell], ["b", "1"]])
    assert _row(lines, "b").endswith(" " * (len(cell) - 1) + "1 │")


def test_cells_and_titles_are_not_rich_markup():
    lines = _printed("median (TSV[n-1] - TSV[n]) / TSV[n-1]", ["cell"], [["[bold]x[/] [n-1] and enough text to be wide"]])
    text = "\n".join(lines)
    assert "median (TSV[n-1] - TSV[n]) / TSV[n-1]" in text and "[bold]x[/] [n-1]" in text


def test_labels_wrap_at_spaces_slashes_and_hyphens_before_anything_is_cut():
    label = "CORTEX CE/INTEGRATED-GRADIENTS"
    rows = [["resnet", label] + [0.863, 0.701, 0.565, 0.362, 0.26, 0.197]]
    lines = _printed("t", ["judge", "selection"] + [f"n={n}" for n in range(0, 60, 10)], rows)
    assert max(map(len, lines)) <= 80 and "…" not in "".join(lines)
    assert "0.863 │ 0.701 │ 0.565 │ 0.362 │ 0.26 │ 0.197 │" in "".join(lines)  # the numbers stay on one line
    pieces = [line.split("│")[2].strip() for line in lines if line.startswith("│")]
    assert "".join(pieces).replace(" ", "") == label.replace(" ", "")  # the label is all there, in order


def test_a_table_too_wide_even_wrapped_is_split_and_repeats_its_labels():
    columns = ["judge"] + [f"value number {i}" for i in range(12)]
    rows = [["resnet"] + [f"{i}.{i}{i}{i}" for i in range(12)], ["vit"] + [f"-{i}.{i}{i}{i}" for i in range(12)]]
    lines = _printed("wide", columns, rows)
    text = "\n".join(lines)
    assert max(map(len, lines)) <= 80 and "…" not in text
    parts = [line.strip() for line in lines if line.strip().startswith("wide (")]
    assert len(parts) >= 2 and parts[0] == f"wide (1 of {len(parts)})"
    assert sum(line.startswith("│ resnet ") for line in lines) == len(parts)  # the label column in every part
    for cell in rows[0][1:] + rows[1][1:]:
        assert text.count(f" {cell} ") == 1, cell  # every value once, whole


def test_a_table_that_fits_is_drawn_as_before():
    lines = _printed("t", ["rank", "token"], [[1, 4], [2, 17]], width=80)
    assert lines[-4:] == ["┡━━━━━━╇━━━━━━━┩", "│    1 │     4 │", "│    2 │    17 │", "└──────┴───────┘"]


runner = CliRunner()


def test_read_commands_fit_80_columns(store, tiny_model, db_url, tmp_path, monkeypatch):
    """`models list` and `top-tokens --baseline` through the CLI, with COLUMNS=80 as a terminal sets it."""
    import torch
    from safetensors.torch import save_file

    from cortex_cli.models import registry as model_registry
    from cortex_cli.extractors.architectures import ExtractorConfig, build_extractor
    from cortex_cli.extractors.registry import register_extractor

    torch.manual_seed(0)
    cfg = ExtractorConfig("ce", in_channels=16, grid=16, width=8, n_classes=4, fc_width=16)
    path = tmp_path / "ce.safetensors"
    save_file({k: v.contiguous() for k, v in build_extractor(cfg).eval().state_dict().items()}, str(path))
    register_extractor(store, tiny_model, "ce", cfg, {}, path, {})
    store_random_images(store, tiny_model, model_registry.classes(store, tiny_model)[0], 4)
    res = runner.invoke(app, ["--db", db_url, "index", "--model", "tiny", "--class", "goldfinch", "--images", "4",
                              "--samples", "2", "--top-n", "6", "--json"])
    assert res.exit_code == 0, res.output

    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(render, "console", Console())  # as if started in an 80-column terminal
    for args in (["models", "list"], ["top-tokens", "goldfinch", "--model", "tiny", "-k", "10", "--baseline", "frequency"]):
        res = runner.invoke(app, ["--db", db_url, *args], env={"COLUMNS": "80"})
        assert res.exit_code == 0, res.output
        table_lines = [line for line in res.stdout.splitlines() if line[:1] in "┏┃┡│└"]
        assert len(table_lines) >= 5 and max(map(len, table_lines)) <= 80 and "…" not in res.stdout, res.stdout


@pytest.mark.parametrize("quiet", [True, False])
@pytest.mark.parametrize("bar", [render.progress, render.deferred_progress])
def test_progress_bars_take_the_library_progress_shape(bar, quiet, monkeypatch):
    """`Progress` is (done, total, info): positional or by keyword, quiet or drawn (a `--quiet` run once crashed here)."""
    drawn = io.StringIO()
    monkeypatch.setattr(render, "err_console", Console(file=drawn, width=100, force_terminal=False))
    with bar("x", quiet=quiet) as update:
        update(1, 3, "positional")
        update(2, 3, info="keyword")
        update(3, 3)
    if quiet:
        assert drawn.getvalue() == ""
    else:  # drawn once at the end off a terminal: the bar reached 3 of 3
        assert "3/3" in drawn.getvalue() and "x" in drawn.getvalue()
