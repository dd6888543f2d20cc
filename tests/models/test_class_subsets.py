"""--classes "a,b" / @file.txt: parsing, resolution, and `generate` / `index` over a subset."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from cortex_cli.models.class_subsets import parse_class_list, resolve_classes, select_classes
from cortex_cli.cli import app
from cortex_cli.core.errors import CortexError
from cortex_cli.extractors.architectures import ExtractorConfig, build_extractor
from cortex_cli.extractors.registry import register_extractor

runner = CliRunner()


def test_parse_inline_and_file(tmp_path):
    assert parse_class_list(" goldfinch, black grouse ,3,") == ["goldfinch", "black grouse", "3"]
    path = tmp_path / "birds.txt"
    path.write_text("# Table 3 birds\ngoldfinch\n\nwater ouzel  # the dipper\nblack grouse, 0\n")
    assert parse_class_list(f"@{path}") == ["goldfinch", "water ouzel", "black grouse", "0"]
    with pytest.raises(CortexError, match="cannot read"):
        parse_class_list(f"@{tmp_path / 'missing.txt'}")
    with pytest.raises(CortexError, match="names no class"):
        parse_class_list(" , ")


def test_resolve_keeps_order_and_drops_repeats(store, tiny_model):
    got = resolve_classes(store, tiny_model, "black grouse,goldfinch,2,0")
    assert [c.class_id for c in got] == [2, 0]
    assert len(resolve_classes(store, tiny_model, "all")) == 4
    with pytest.raises(CortexError, match="goldfinch"):
        resolve_classes(store, tiny_model, "goldfinc")
    with pytest.raises(CortexError, match="one of --class"):
        select_classes(store, tiny_model, "goldfinch", "0,1")
    with pytest.raises(CortexError, match="one of --class"):
        select_classes(store, tiny_model, None, None)


def test_generate_and_index_a_subset(store, tiny_model, db_url, tmp_path):
    torch.manual_seed(0)
    cfg = ExtractorConfig("ce", in_channels=16, grid=16, width=8, n_classes=4, fc_width=16)
    path = tmp_path / "ce.safetensors"
    save_file({k: v.contiguous() for k, v in build_extractor(cfg).eval().state_dict().items()}, str(path))
    register_extractor(store, tiny_model, "ce", cfg, {}, path, {})
    subset = tmp_path / "subset.txt"
    subset.write_text("black grouse\ngoldfinch\n")

    gen = runner.invoke(app, ["--db", db_url, "generate", "--model", "tiny", "--classes", f"@{subset}", "-n", "2", "--json"])
    assert gen.exit_code == 0, gen.output
    assert [(r["class_name"], r["added"]) for r in json.loads(gen.stdout)] == [("black grouse", 2), ("goldfinch", 2)]

    res = runner.invoke(app, ["--db", db_url, "index", "--model", "tiny", "--classes", "goldfinch,2", "--images", "2",
                              "--samples", "2", "--top-n", "3", "--json"])
    assert res.exit_code == 0, res.output
    assert [(r["class_id"], r["added"], r["skipped"]) for r in json.loads(res.stdout)] == [(0, 2, 0), (2, 2, 0)]

    both = runner.invoke(app, ["--db", db_url, "index", "--model", "tiny", "--class", "goldfinch", "--classes", "2"])
    assert both.exit_code == 1 and "one of --class" in both.output
