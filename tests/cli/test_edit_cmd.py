"""`cortex edit` through CliRunner: the table, JSON, and one-line errors that write nothing."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from cortex_cli.cli import app
from cortex_cli.store.schema import EditRow

from tests.search.test_edit import register_tiny_ce, tiny_png


@pytest.fixture
def cli_env(store, tiny_model, tmp_path, db_url):
    register_tiny_ce(store, tiny_model, tmp_path)
    src = tmp_path / "src" / "bird.png"
    tokens = tiny_png(tiny_model, src)
    return db_url, src, tokens, tmp_path / "out", store


def _run(db_url, *args):
    return CliRunner().invoke(app, ["--db", db_url, "edit", *map(str, args)])


def test_edit_prints_table_and_changed_tokens(cli_env):
    db_url, src, tokens, out, store = cli_env
    res = _run(db_url, src, "--model", "tiny", "--target", "dipper", "--region", "4:6,4:6", "--steps", "8",
               "--init", "random", "--out", out, "--save-every", "4", "--quiet")
    assert res.exit_code == 0, res.output
    assert "extractor:ce" in res.stdout and "P(goldfinch) before" in res.stdout and "P(water ouzel)" in res.stdout
    assert "changed" in res.stdout and "->" in res.stdout
    assert "no judge scores" in res.stdout
    assert len(list(out.glob("bird.edit1-water-ouzel*.png"))) == 3  # final, step 4, strip


def test_edit_prints_the_prior_nll_it_stores_in_the_json(cli_env):
    db_url, src, tokens, out, store = cli_env
    args = [src, "--model", "tiny", "--target", "dipper", "--region", "4:6,4:6", "--steps", "6", "--init", "random", "--quiet"]
    shown = _run(db_url, *args, "--out", out / "a")
    data = json.loads(_run(db_url, *args, "--out", out / "b", "--json").stdout)
    assert data["prior_nll"] is not None and data["prior_nll_source"] is not None
    line = next(l for l in shown.stdout.splitlines() if l.startswith("prior NLL under"))
    assert line.startswith(f"prior NLL under water ouzel: source {data['prior_nll_source']:.3f} -> result {data['prior_nll']:.3f}")


def test_edit_json_and_seed_option(cli_env):
    db_url, src, tokens, out, store = cli_env
    args = [src, "-m", "tiny", "--target", "3", "-r", "0:3,0:3", "--steps", "5", "--init", "random", "--space", "embedding", "--out", out, "--json"]
    a = json.loads(_run(db_url, *args, "--seed", "4").stdout)
    b = json.loads(_run(db_url, *args, "--seed", "4").stdout)
    assert a["method"] == "embedding" and a["target_name"] == "analog clock" and a["params"]["seed"] == 4
    assert a["result_tokens"] == b["result_tokens"] and a["edit_id"] + 1 == b["edit_id"]
    assert [row[3:] for row in a["result_tokens"][:3]] == [row[3:] for row in a["source_tokens"][:3]]
    assert a["result_tokens"][3:] == a["source_tokens"][3:]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--region", "4:20,0:4"], "outside the 16x16 token grid"),
        (["--region", "4:4,0:4"], "is empty"),
        (["--region", "four"], "malformed"),
        (["--target", "goldfnch"], "did you mean"),
        (["--steps", "0"], "--steps must be a positive"),
        (["--init", "zero"], "--init 'zero' is not one of"),
        (["--tau", "-1"], "--tau must be > 0"),
        (["--model", "nosuch"], "no model named 'nosuch'"),
        (["--extractor", "re"], "no extractor named 're'"),
    ],
)
def test_bad_options_fail_in_one_line_and_write_nothing(cli_env, args, fragment):
    db_url, src, tokens, out, store = cli_env
    base = {"--model": "tiny", "--target": "water ouzel", "--region": "4:8,4:8", "--steps": "3"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    res = _run(db_url, src, *[x for kv in base.items() for x in kv], "--out", out)
    assert res.exit_code == 1
    assert fragment in res.stderr and res.stderr.strip().count("\n") == 0 and "Traceback" not in res.output
    assert not out.exists()
    with store.session() as s:
        assert s.scalars(select(EditRow)).all() == []


@pytest.mark.parametrize("kind", ["not an image", "truncated", "missing", "other model"])
def test_bad_images_fail_in_one_line(cli_env, kind, tiny_model):
    db_url, src, tokens, out, store = cli_env
    path = src.parent / "bad.png"
    if kind == "not an image":
        path.write_text("hello, I am text")
        fragment = "is not an image"
    elif kind == "truncated":
        path.write_bytes(src.read_bytes()[:300])
        fragment = "damaged or truncated"
    elif kind == "missing":
        fragment = "does not exist"
    else:
        tiny_png(tiny_model, path, model_name="mini")
        fragment = "was made by model 'mini'; pass --model mini"
    res = _run(db_url, path, "--model", "tiny", "--target", "1", "--region", "all", "--steps", "3", "--out", out)
    assert res.exit_code == 1 and fragment in res.stderr and res.stderr.strip().count("\n") == 0
    assert not out.exists()
