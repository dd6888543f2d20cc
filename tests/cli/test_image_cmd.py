"""`cortex image` and `cortex mask` through CliRunner: JSON equal to the API's, tables, and one-line errors that write nothing."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cortex_cli import Workspace
from cortex_cli.cli import app
from cortex_cli.evaluation.masking import FILLS
from cortex_cli.images.pngmeta import read_png
from cortex_cli.models import registry as model_registry

from tests.index_helpers import store_random_images
from tests.store_rows import sqlite_row_counts

CONCEPT = "red-capped bird"
runner = CliRunner()


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """(db URL, db path, workspace, image ids, index run id, dir): 2 random-token mini images of CONCEPT, indexed; a concept 'warm'."""
    home = tmp_path_factory.mktemp("image-cmd")
    db = home / "cortex.db"
    ws = Workspace(home=home, db=f"sqlite:///{db}", device="cpu")
    info = ws.model()
    ids = store_random_images(ws.store, info, model_registry.resolve_class(ws.store, info, CONCEPT), 2, vocab=info.n_embed)
    (indexed,) = ws.index(CONCEPT, images=2, samples=4)
    ws.add_concept("warm", classes=f"{CONCEPT},sun")
    (home / "a-file").write_text("")
    yield f"sqlite:///{db}", db, ws, ids, indexed.run_id, home
    ws.close()


def _run(db_url, *args):
    return runner.invoke(app, ["--db", db_url, *map(str, args)])


def _json(db_url, *args):
    res = _run(db_url, *args, "--json")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_image_json_equals_the_api_and_the_table_names_its_runs(mini, tmp_path):
    url, _, ws, ids, run_id, _ = mini
    data = _json(url, "image", ids[1])
    assert data == ws.image(ids[1]).to_dict()
    assert (data["id"], data["class_name"], data["seed"], data["indexed_by"], len(data["tokens"])) == (ids[1], CONCEPT, 1, [run_id], 16)
    shown = _run(url, "image", ids[1], "--out", tmp_path / "img.png")
    assert shown.exit_code == 0, shown.output
    assert f"image {ids[1]} of model mini" in shown.stdout and CONCEPT in shown.stdout and "indexed by runs" in shown.stdout
    assert f"wrote {tmp_path / 'img.png'}" in shown.stdout
    png = read_png(tmp_path / "img.png")
    assert png.tokens.tolist() == data["tokens"] and png.model_name == "mini" and png.meta["image_id"] == ids[1]


def test_mask_json_equals_the_api(mini):
    url, _, ws, ids, run_id, _ = mini
    given = _json(url, "mask", ids[0], "--positions", "20, 3,4,3")
    assert given == ws.mask(ids[0], positions=[20, 3, 4, 3]).to_dict()
    assert given["positions"] == [3, 4, 20] and given["chosen_by"] == "given positions" and given["out"] is None
    assert [j["judge"] for j in given["judges"]] == ["resnet", "vit"]
    assert all(0 <= j[k] <= 1 for j in given["judges"] for k in ("original", "masked", "random"))
    top = _json(url, "mask", ids[1], "--top-n", "3", "--seed", "2", "--class", "sun", "--fill", "mean")
    assert top == ws.mask(ids[1], top_n=3, seed=2, target="sun", fill="mean").to_dict()
    assert (top["class_name"], top["fill"], top["seed"], len(top["positions"])) == ("sun", "mean", 2, 3)
    assert top["chosen_by"] == f"top 3 TSV (index run {run_id}, ce)"


def test_mask_table_and_strip(mini, tmp_path):
    url, _, ws, ids, _, _ = mini
    res = _run(url, "mask", ids[0], "--positions", "3,4", "--fill", "tokens", "--out", tmp_path / "strip.png")
    assert res.exit_code == 0, res.output
    expected = ws.mask(ids[0], positions=[3, 4], fill="tokens")
    title = " ".join(res.stdout.split())  # the table's title wraps to its width
    assert f"P('{CONCEPT}') with 2 tokens masked (tokens; given positions) beside 2 random ones (seed 0)" in title
    rows = [line.split("│")[1:5] for line in res.stdout.splitlines() if line.startswith("│")]
    assert [[cell.strip() for cell in row] for row in rows] == [[j.judge, *(f"{v:.4g}" for v in (j.original, j.masked, j.random))]
                                                                for j in expected.judges]
    assert f"masked positions 3, 4; tokens {expected.tokens[0]}, {expected.tokens[1]}" in res.stdout
    assert f"wrote {tmp_path / 'strip.png'}" in res.stdout
    assert read_png(tmp_path / "strip.png").meta == {"figure": "mask", "source": str(ids[0]), "positions": [3, 4]}


def test_mask_help_names_the_fills_it_takes():
    res = runner.invoke(app, ["mask", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and all(fill in res.stdout for fill in FILLS) and "gray" not in res.stdout


BAD = [
    (["image", "999"], "image id(s) 999 are not images of model 'mini'"),
    (["image", "0"], "an image id is a positive integer, got 0"),
    (["image", "abc"], "Invalid value"),
    (["image", "{id}", "--model", "nosuch"], "no model named 'nosuch'"),
    (["image", "{id}", "--out", "{home}/a-file/x.png"], "cannot write PNG"),
    (["mask", "999", "--positions", "1"], "image id(s) 999 are not images of model 'mini'"),
    (["mask", "{id}", "--positions", "1,x"], "--positions takes comma-separated integers (row * m + col), got '1,x'"),
    (["mask", "{id}", "--positions", "1,256"], "position 256 is outside the 16x16 token grid (0..255)"),
    (["mask", "{id}", "--positions", "-1"], "position -1 is outside"),
    (["mask", "{id}", "--positions", ","], "no positions to mask"),
    (["mask", "{id}", "--positions", "1", "--fill", "purple"], "unknown fill 'purple'; choose one of black, mean, blur, tokens"),
    (["mask", "{id}", "--fill", "purple"], "unknown fill 'purple'"),
    (["mask", "{id}", "--positions", "1", "--class", "warm"], "mask scores one class; 'warm' is a concept"),
    (["mask", "{id}", "--positions", "1", "--class", "no such bird"], "no such bird"),
    (["mask", "{id}", "--top-n", "0"], "--top-n must be >= 1"),
    (["mask", "{home}/missing.png", "--positions", "1"], "does not exist"),
    (["mask", "{home}/a-file", "--positions", "1"], "not an image"),
    (["mask", "{id}", "--positions", "1", "--model", "nosuch"], "no model named 'nosuch'"),
    (["mask", "{id}", "--positions", "1", "--out", "{home}/a-file/x.png"], "cannot write PNG"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_writes_nothing(mini, tmp_path, args, message):
    url, db, _, ids, _, home = mini
    before = sqlite_row_counts(db)
    out = tmp_path / "out"
    extra = [] if "--out" in args else ["--out", out / "x.png"]
    res = _run(url, *[a.format(id=ids[0], home=home) for a in args], *extra)
    lines = res.stderr.strip().splitlines()
    assert res.exit_code != 0 and (res.exception is None or isinstance(res.exception, SystemExit)), res.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.output, res.output
    assert message in lines[0]
    assert not out.exists() and sqlite_row_counts(db) == before
