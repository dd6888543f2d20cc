"""`cortex audit`: the --json keys the issue names, and bad input refused in one line with the store unchanged."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cortex_cli.cli import app
from tests.store_rows import sqlite_row_counts

runner = CliRunner()
RED, BLUE, CAPPED = "red-capped bird", "blue-capped bird", "capped bird"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A mini home: both groups indexed on 2 train images, 'capped bird' of them, 2 + 1 test images; 'red' has none."""
    path = tmp_path_factory.mktemp("audit-cli")
    env = {"CORTEX_HOME": str(path)}
    for args in (["index", "--classes", f"{RED},{BLUE}", "-n", "2", "--samples", "2", "-q"],
                 ["generate", "--class", RED, "-n", "2", "--split", "test", "-q"],
                 ["generate", "--class", BLUE, "-n", "1", "--split", "test", "-q"],
                 ["concepts", "add", CAPPED, "--classes", f"{RED},{BLUE}"],
                 ["concepts", "add", "red", "--classes", "red mushroom,red sailboat"]):
        assert runner.invoke(app, args, env=env).exit_code == 0
    return path


def test_json_has_the_issues_keys(home, tmp_path):
    result = runner.invoke(app, ["audit", CAPPED, "--groups", f"{RED},{BLUE}", "--resamples", "50", "-o", str(tmp_path), "--json"],
                           env={"CORTEX_HOME": str(home)})
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"neutral", "images", "groups", "cliff_delta", "cliff_delta_ci"} <= set(data)
    assert (data["neutral"], data["images"]) == (CAPPED, 3) and [g["name"] for g in data["groups"]] == [RED, BLUE]
    for group in data["groups"]:
        assert {"name", "tokens", "share", "share_ci"} <= set(group) and len(group["share_ci"]) == 2
        assert all(isinstance(t, int) for t in group["tokens"])
    assert -1 <= data["cliff_delta"] <= 1 and data["cliff_delta_ci"][0] <= data["cliff_delta_ci"][1]
    assert "seconds" not in data and "evaluation_id" not in data  # the reproducible part, as every evaluation's --json


def test_the_table_fits_80_columns(home, tmp_path):
    result = runner.invoke(app, ["audit", CAPPED, "--groups", f"{RED},{BLUE}", "--resamples", "50", "-o", str(tmp_path), "-q"],
                           env={"CORTEX_HOME": str(home), "COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "Cliff's delta" in result.stdout and max(len(line) for line in result.stdout.splitlines() if "│" in line) <= 80


BAD = [
    ([CAPPED, "--groups", f"{CAPPED},{BLUE}"], "is the audited concept 'capped bird' itself"),
    ([RED, "--groups", f"{RED},{BLUE}"], "is the audited concept 'red-capped bird' itself"),
    (["no such bird", "--groups", f"{RED},{BLUE}"], "no such bird"),
    ([CAPPED, "--groups", f"{RED},no such bird"], "no such bird"),
    ([CAPPED, "--groups", RED], "exactly two groups"),
    ([CAPPED, "--groups", f"{RED},{RED}"], "are the same"),
    (["red", "--groups", f"{RED},{BLUE}"], "'red' has no stored test images to audit; run `cortex generate --classes"),
    ([CAPPED, "--groups", f"{RED},{BLUE}", "--split", "val"], "no stored val images"),
    ([CAPPED, "--groups", f"{RED},{BLUE}", "-k", "0"], "-k must be a positive"),
    ([CAPPED, "--groups", f"{RED},{BLUE}", "--resamples", "0"], "--resamples must be >= 1"),
    ([CAPPED, "--groups", f"{RED},goldfish"], "not indexed yet"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_bad_input_is_one_line_and_changes_nothing(home, args, message):
    before = sqlite_row_counts(home / "cortex.db")
    result = runner.invoke(app, ["audit", *args], env={"CORTEX_HOME": str(home)})
    lines = result.stderr.strip().splitlines()
    assert result.exit_code != 0 and (result.exception is None or isinstance(result.exception, SystemExit)), result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.output
    assert message in lines[0]
    assert sqlite_row_counts(home / "cortex.db") == before
