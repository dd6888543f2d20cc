"""CLI: index, top-tokens, token, show, explain through CliRunner on the tiny model."""

from __future__ import annotations

import csv
import io
import json

import pytest
from PIL import Image
from safetensors.torch import save_file
from sqlalchemy import func, select
from typer.testing import CliRunner

from cortex_cli.models import registry as model_registry
from cortex_cli.cli import app
from cortex_cli.extractors.architectures import ExtractorConfig, build_extractor
from cortex_cli.extractors.registry import register_extractor
from cortex_cli.images.pngmeta import read_png
from cortex_cli.store.schema import SaliencyMapRow, SalientTokenRow

from index_helpers import store_random_images

pytestmark = pytest.mark.both_backends  # store/db_url tests run on SQLite and PostgreSQL

runner = CliRunner()


@pytest.fixture
def setup(store, tiny_model, tmp_path, db_url):
    import torch

    torch.manual_seed(0)
    cfg = ExtractorConfig("ce", in_channels=16, grid=16, width=8, n_classes=4, fc_width=16)
    net = build_extractor(cfg).eval()
    path = tmp_path / "ce.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    register_extractor(store, tiny_model, "ce", cfg, {}, path, {})
    for cls in model_registry.classes(store, tiny_model)[:2]:
        store_random_images(store, tiny_model, cls, 4)
    return db_url


def cli(db_url, *args):
    return runner.invoke(app, ["--db", db_url, *args])


def index(db_url, cls="goldfinch", *extra):
    return cli(db_url, "index", "--model", "tiny", "--class", cls, "--images", "4", "--samples", "2", "--top-n", "6", "--json", *extra)


def test_index_then_query_then_draw(setup, store, tmp_path):
    db = setup
    res = index(db)
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert (payload["added"], payload["skipped"], payload["images"]) == (4, 0, 4)
    again = json.loads(index(db).stdout)
    assert (again["added"], again["skipped"]) == (0, 4)
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(SalientTokenRow)) == 24
        assert s.scalar(select(func.count()).select_from(SaliencyMapRow)) == 4

    res = cli(db, "top-tokens", "goldfinch", "--model", "tiny", "-k", "5", "--baseline", "frequency", "--json")
    assert res.exit_code == 0, res.output
    top = json.loads(res.stdout)
    assert [r["rank"] for r in top["rows"]] == [1, 2, 3, 4, 5]
    assert top["images_indexed"] == 4 and top["baseline_images"] == 4 and top["image_seeds"] == "0-3"
    assert top["baseline_kind"] == "frequency" and len(top["baseline"]) == 5 and 0 <= top["jaccard"] <= 1
    counts = [r["count"] for r in top["rows"]]
    assert counts == sorted(counts, reverse=True)

    res = cli(db, "top-tokens", "goldfinch", "--model", "tiny", "-k", "3", "--csv")
    rows = list(csv.reader(io.StringIO(res.stdout)))
    assert rows[0][:2] == ["rank", "token"] and len(rows) == 4
    assert [int(r[1]) for r in rows[1:]] == [r["token"] for r in top["rows"][:3]]
    table_out = cli(db, "top-tokens", "goldfinch", "--model", "tiny", "-k", "3", "--baseline", "frequency")
    assert table_out.exit_code == 0 and "overlap with the frequency baseline" in table_out.stdout
    bad = cli(db, "top-tokens", "goldfinch", "--model", "tiny", "--baseline", "tfidf")
    assert bad.exit_code == 1 and "--baseline must be one of frequency, specific" in bad.output
    two = json.loads(cli(db, "top-tokens", "goldfinch", "--model", "tiny", "-k", "3", "--images", "2", "--json").stdout)
    assert two["images_indexed"] == 2 and two["image_seeds"] == "0-1"
    many = cli(db, "top-tokens", "goldfinch", "--model", "tiny", "--images", "9")
    assert many.exit_code == 1 and "--images 9" in many.output and "Traceback" not in many.output

    token = top["rows"][0]["token"]
    res = cli(db, "token", str(token), "--model", "tiny", "--json")
    assert res.exit_code == 0, res.output
    usage = json.loads(res.stdout)
    assert usage["salient"][0]["class_name"] == "goldfinch"
    assert usage["salient"][0]["count"] == top["rows"][0]["count"]
    assert {u["class_name"] for u in usage["occurrence"]} <= {"goldfinch", "water ouzel"}

    fig2 = tmp_path / "fig2.png"
    res = cli(db, "show", "1", "--model", "tiny", "--top-n", "3", "--out", str(fig2), "--json")
    assert res.exit_code == 0, res.output
    shown = json.loads(res.stdout)
    assert shown["tsv_from"].startswith("index run") and len(shown["top"]) == 3
    assert Image.open(fig2).size == (256, 256)

    fig5 = tmp_path / "fig5.png"
    res = cli(db, "show", "--model", "tiny", "--class", "goldfinch", "--token", str(token), "--out", str(fig5), "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["images_with_token"] == top["rows"][0]["n_images"]
    assert fig5.is_file()


def test_explain_png_with_and_without_metadata(setup, tmp_path):
    db = setup
    res = cli(db, "generate", "--model", "tiny", "--class", "black grouse", "-n", "1", "--out", str(tmp_path / "png"), "--json")
    assert res.exit_code == 0, res.output
    png = json.loads(res.stdout)["png_paths"][0]
    out = tmp_path / "explained.png"
    res = cli(db, "explain", png, "--samples", "2", "--top-n", "4", "--out", str(out), "--json")
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert result["class_name"] == "black grouse" and result["target"] == "PNG metadata"
    assert result["tokens_from"] == "PNG metadata" and len(result["top"]) == 4
    assert out.is_file()
    # a plain picture: encoded by the VQGAN, target predicted
    plain = tmp_path / "plain.png"
    read_png(png).image.save(plain)
    res = cli(db, "explain", str(plain), "--model", "tiny", "--samples", "2", "--json")
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert result["tokens_from"] == "VQGAN encoding" and result["target"] == "predicted by the extractor"
    # explain writes nothing to the index
    assert cli(db, "top-tokens", "black grouse", "--model", "tiny").exit_code == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["top-tokens", "zebra", "--model", "tiny"], "zebra"),
        (["top-tokens", "analog clock", "--model", "tiny"], "run `cortex index --class 'analog clock'` first"),
        (["top-tokens", "goldfinch", "--model", "tiny", "-k", "0"], "-k must be a positive"),
        (["top-tokens", "goldfinch", "--model", "tiny", "--extractor", "re"], "no extractor named 're'"),
        (["index", "--model", "tiny", "--class", "goldfinch", "--extractor", "re"], "cortex train-extractor"),
        (["index", "--model", "tiny", "--class", "zebra"], "zebra"),
        (["index", "--model", "tiny", "--class", "goldfinch", "--reduce", "min"], "--reduce"),
        (["token", "9999", "--model", "tiny"], "outside model 'tiny'"),
        (["show", "999", "--model", "tiny", "--out", "x.png"], "not a stored image"),
        (["show", "--class", "goldfinch", "--out", "x.png", "--model", "tiny"], "--class and --token go together"),
    ],
)
def test_errors_are_one_line(setup, args, message):
    db = setup
    assert index(db).exit_code == 0
    res = cli(db, *args)
    assert res.exit_code != 0
    err = res.stderr.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in res.output
