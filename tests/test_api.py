"""The Python API: a Workspace gives what the CLI prints, from plain inputs, as frozen results that render."""

from __future__ import annotations

import dataclasses
import json
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cortex_cli import CortexError, Workspace
from cortex_cli.cli import app
from tests.store_rows import sqlite_row_counts

runner = CliRunner()
CONCEPT = "red-capped bird"
FAST = {"images": 4, "samples": 4}  # a few images, a few noisy copies: seconds on the mini model


def cli_json(home, *args: str):
    """`cortex ... --json` run in `home` (its default SQLite database), parsed."""
    result = runner.invoke(app, [*args, "--json"], env={"CORTEX_HOME": str(home)})
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """A home whose mini index holds 4 images of CONCEPT, indexed through the API."""
    home = tmp_path_factory.mktemp("api-home")
    with Workspace(home=home, device="cpu") as ws:
        results = ws.index(CONCEPT, **FAST)
        ws.generate(CONCEPT, 1, out=home / "pngs")
    return home, results


def test_index_then_top_tokens_from_a_fresh_home_equals_the_cli(indexed, tmp_path):
    home, results = indexed
    assert [(r.class_name, r.images, r.added) for r in results] == [(CONCEPT, 4, 4)]
    assert (home / "cortex.db").is_file()  # the workspace's own home, not $CORTEX_HOME
    ws = Workspace(home=home, device="cpu")
    top = ws.top_tokens(CONCEPT, k=5, baseline="frequency")
    assert top.to_dict() == cli_json(home, "top-tokens", CONCEPT, "-k", "5", "--baseline", "frequency")
    assert top.images_indexed == 4 and len(top.rows) == 5 and top.baseline_kind == "frequency"
    # the same index call from the CLI in another fresh home writes the same rows (timing aside)
    other = tmp_path / "cli-home"
    by_cli = cli_json(other, "index", "--class", CONCEPT, "--images", "4", "--samples", "4")
    timing = {"seconds", "images_per_s"}
    assert {k: v for k, v in by_cli.items() if k not in timing} == {k: v for k, v in results[0].to_dict().items() if k not in timing}
    assert cli_json(other, "top-tokens", CONCEPT, "-k", "5", "--baseline", "frequency") == top.to_dict()


def test_read_methods_equal_their_commands(indexed):
    home, _ = indexed
    ws = Workspace(home=home, device="cpu")
    token = ws.top_tokens(CONCEPT, k=1).rows[0].token
    assert ws.token(token, top=3).to_dict() == cli_json(home, "token", str(token), "--top", "3")
    assert [m.to_dict() for m in ws.models()] == cli_json(home, "models", "list")
    png = next((home / "pngs").glob("*.png"))
    assert ws.explain(png, top_n=4, samples=4).to_dict() == cli_json(home, "explain", str(png), "--top-n", "4", "--samples", "4")


def test_pictures_in_memory_are_explained_like_their_file(indexed):
    home, _ = indexed
    ws = Workspace(home=home, device="cpu")
    png = next((home / "pngs").glob("*.png"))
    from_file = ws.explain(png, top_n=4, samples=4)
    from_pil = ws.explain(Image.open(png), top_n=4, samples=4)  # its PNG text (the token grid) travels with it
    assert from_pil.tokens_from == from_file.tokens_from == "PNG metadata"
    assert [t.token for t in from_pil.top] == [t.token for t in from_file.top]
    pixels = torch.from_numpy(np.array(Image.open(png).convert("RGB"))).permute(2, 0, 1).float() / 127.5 - 1
    from_tensor = ws.explain(pixels, top_n=4, samples=4)  # no metadata: the VQGAN encodes it
    assert from_tensor.tokens_from == "VQGAN encoding" and len(from_tensor.top) == 4
    with pytest.raises(CortexError, match="3 x H x W"):
        ws.explain(torch.zeros(2, 2), top_n=4)


def test_results_are_frozen_tables_with_thumbnails(indexed):
    home, results = indexed
    ws = Workspace(home=home, device="cpu")
    top = ws.top_tokens(CONCEPT, k=3, baseline="frequency")
    with pytest.raises(dataclasses.FrozenInstanceError):
        top.k = 7
    with pytest.raises(dataclasses.FrozenInstanceError):
        results[0].added = 0
    frame = top.to_pandas()
    assert list(frame["token"]) == [r.token for r in top.rows] and "baseline_token" in frame.columns
    html = top._repr_html_()
    assert html.count("<img") == 3 and "data:image/png;base64," in html  # one decoded codebook entry per listed token
    assert "picture" not in json.dumps(top.to_dict())  # thumbnails are for notebooks, not part of the result
    assert results[0].to_pandas().loc[0, "added"] == 4  # any result: one row of its scalar fields


def test_progress_has_one_shape_and_reaches_the_total(tmp_path):
    calls = []
    with Workspace(home=tmp_path, device="cpu") as ws:
        ws.generate(CONCEPT, 3, progress=lambda done, total, info="": calls.append((done, total, info)))
    assert calls and calls[-1][0] == calls[-1][1] == 3 and all(CONCEPT in info for _, _, info in calls)


def test_bad_input_is_a_cortex_error_and_the_store_is_unchanged(indexed):
    home, _ = indexed
    with pytest.raises(CortexError, match="unknown device 'tpu'"):
        Workspace(home=home, device="tpu")
    with pytest.raises(CortexError, match="not 'mysql'"):
        Workspace(home=home, db="mysql://h/db")
    with pytest.raises(CortexError, match="malformed database URL"):
        Workspace(home=home, db="not a url")
    before = sqlite_row_counts(home / "cortex.db")
    ws = Workspace(home=home, device="cpu")
    for call, message in [
        (lambda: ws.index("no such bird", images=2), "unknown class"),
        (lambda: ws.index(CONCEPT, images=0), "--images must be >= 1"),
        (lambda: ws.index(CONCEPT, images=2, method="lime"), "lime"),
        (lambda: ws.top_tokens(CONCEPT, baseline="tfidf"), "--baseline must be one of"),
        (lambda: ws.evaluate("fairness"), "unknown evaluation 'fairness'"),
        (lambda: ws.evaluate("localization", images_per_clas=3), "its settings are"),
        (lambda: ws.evaluate("stability", judge_weights="w/"), "uses no judges"),
        (lambda: ws.generate([CONCEPT, 99], 2), "99"),
        (lambda: ws.generate(CONCEPT, 2, split="holdout"), "holdout"),
    ]:
        with pytest.raises(CortexError, match=message):
            call()
    ws.close()
    assert sqlite_row_counts(home / "cortex.db") == before


def test_two_workspaces_keep_their_homes_apart(tmp_path):
    a, b = Workspace(home=tmp_path / "a", device="cpu"), Workspace(home=tmp_path / "b", device="cpu")
    a.generate(CONCEPT, 2)
    b.generate(CONCEPT, 1)
    assert (sqlite_row_counts(tmp_path / "a" / "cortex.db")["images"], sqlite_row_counts(tmp_path / "b" / "cortex.db")["images"]) == (2, 1)
