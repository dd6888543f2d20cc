"""`cortex train-extractor --concept` and `cortex test-extractor` with a concept extractor, through the real CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cortex_cli.cli import app
from tests.cli.test_extractor_cmd import learnable, one_error_line  # noqa: F401  (learnable is a fixture)
from tests.store_rows import sqlite_row_counts

runner = CliRunner()
SMALL = ["--model", "tiny", "--width", "8", "--fc-width", "16", "--epochs", "1", "--batch-size", "8",
         "--train-per-class", "4", "--val-per-class", "2", "--test-per-class", "2"]


def cli(db_url, *args):
    return runner.invoke(app, ["--db", db_url, *args])


def test_bad_concept_options_are_one_line_errors_that_change_nothing(db_url, learnable):
    assert cli(db_url, "concepts", "add", "pair", "--model", "tiny", "--classes", "goldfinch,analog clock").exit_code == 0
    db = db_url.removeprefix("sqlite:///")
    before = sqlite_row_counts(db)
    no_name = cli(db_url, "train-extractor", "--arch", "ce", "--concept", "pair", *SMALL)
    assert "a concept extractor needs its own name: add --name, e.g. --name pair-ce" in one_error_line(no_name)
    both = cli(db_url, "train-extractor", "--arch", "ce", "--concept", "pair", "--classes", "goldfinch", "--name", "x", *SMALL)
    assert "give --concept (a binary extractor for one concept) or --classes" in one_error_line(both)
    unknown = cli(db_url, "train-extractor", "--arch", "ce", "--concept", "blue", "--name", "blue-ce", *SMALL)
    assert "model 'tiny' has no concept 'blue' (concepts: 'pair')" in one_error_line(unknown)
    a_class = cli(db_url, "train-extractor", "--arch", "ce", "--concept", "goldfinch", "--name", "g-ce", *SMALL)
    assert "has no concept 'goldfinch'" in one_error_line(a_class)
    assert sqlite_row_counts(db) == before


def test_train_a_concept_extractor_then_table1_reports_its_binary_accuracy(db_url, learnable, cortex_home):
    assert cli(db_url, "concepts", "add", "pair", "--model", "tiny", "--classes", "goldfinch,analog clock").exit_code == 0
    trained = cli(db_url, "train-extractor", "--arch", "ce", "--concept", "pair", "--name", "pair-ce", *SMALL, "--json")
    assert trained.exit_code == 0, trained.output
    info = json.loads(trained.stdout)["result"]["info"]
    assert info["config"]["concept"] == "pair" and info["config"]["concept_class_ids"] == [0, 3]
    assert info["metrics"]["n_train"] == 16 and set(info["metrics"]["test"]) == {"binary", "y", "not_y"}
    again = cli(db_url, "train-extractor", "--arch", "ce", "--concept", "pair", "--name", "pair-ce", *SMALL)
    assert again.exit_code == 0 and "resumed after epoch 1" in again.stdout
    assert "concept 'pair' vs the other classes" in again.stdout and "test accuracy" in again.stdout

    table = cli(db_url, "test-extractor", "--model", "tiny", "--json")
    assert table.exit_code == 0, table.output
    [row] = json.loads(table.stdout)["extractors"]
    assert (row["name"], row["concept"], row["n_images"], row["classes"]) == ("pair-ce", "pair", 8, ["goldfinch", "analog clock"])
    assert row["accuracy"] == info["metrics"]["test"]
    text = cli(db_url, "test-extractor", "--model", "tiny", "--quiet")
    assert text.exit_code == 0, text.output
    assert "pair-ce (ce) is a binary extractor for concept 'pair' (goldfinch, analog clock vs the other classes): test accuracy" in text.stdout
    assert "Table 1" not in text.stdout  # no class extractor: no top-k table
