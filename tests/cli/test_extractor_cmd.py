"""`cortex train-extractor` / `cortex test-extractor` through the real CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cortex_cli.cli import app
from extractor_helpers import learnable_tiny_model

runner = CliRunner()
SMALL = ["--model", "tiny", "--width", "8", "--fc-width", "16", "--epochs", "2", "--batch-size", "8",
         "--train-per-class", "6", "--val-per-class", "2", "--test-per-class", "4"]


@pytest.fixture
def learnable(store, tiny_model_files, tmp_path):
    return learnable_tiny_model(store, tiny_model_files, tmp_path)


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_unknown_arch_and_missing_extractor_are_one_line_errors(db_url, learnable):
    bad = runner.invoke(app, ["--db", db_url, "train-extractor", "--arch", "vgg", *SMALL])
    assert "unknown extractor architecture 'vgg'; use one of ce, re, re-authors" in one_error_line(bad)
    missing = runner.invoke(app, ["--db", db_url, "test-extractor", "--model", "tiny"])
    assert "run `cortex train-extractor --model tiny --arch ce` first" in one_error_line(missing)
    zero = runner.invoke(app, ["--db", db_url, "train-extractor", "--arch", "ce", *SMALL, "--epochs", "0"])
    assert "epochs must be at least 1" in one_error_line(zero)
    bundle = runner.invoke(app, ["--db", db_url, "train-extractor", "--arch", "ce", *SMALL, "--bundle"])
    assert "--bundle ships extractors of the bundled mini model only" in one_error_line(bundle)


def test_train_then_table1_json(db_url, learnable, cortex_home):
    trained = runner.invoke(app, ["--db", db_url, "train-extractor", "--arch", "re", *SMALL, "--json"])
    assert trained.exit_code == 0, trained.output
    payload = json.loads(trained.stdout)
    info = payload["result"]["info"]
    assert info["name"] == "re" and info["config"]["width"] == 8 and info["config"]["fc_width"] == 16
    assert len(payload["result"]["history"]) == 2 and payload["bundled"] == []
    assert (cortex_home / "extractors" / "tiny" / "re" / "last.pt").is_file()

    again = runner.invoke(app, ["--db", db_url, "train-extractor", "--arch", "re", *SMALL, "--quiet"])
    assert again.exit_code == 0 and "resumed after epoch 2" in again.stdout
    other = runner.invoke(app, ["--db", db_url, "train-extractor", "--arch", "re", *SMALL, "--lr", "0.01"])
    assert "--restart" in one_error_line(other)

    table = runner.invoke(app, ["--db", db_url, "test-extractor", "--model", "tiny", "--json"])
    assert table.exit_code == 0, table.output
    rows = json.loads(table.stdout)["extractors"]
    assert [(r["name"], r["n_images"]) for r in rows] == [("re", 16)]
    assert rows[0]["accuracy"] == info["metrics"]["test"]
    text = runner.invoke(app, ["--db", db_url, "test-extractor", "--model", "tiny", "--quiet"])
    assert text.exit_code == 0 and "Table 1" in text.stdout and "top-10" in text.stdout
