"""Subset extractors (`train-extractor --classes`): label map, class-space logits, refusals, index and top-tokens."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from sqlalchemy import func, select
from typer.testing import CliRunner

from cortex_cli.models import registry as model_registry
from cortex_cli.cli import app
from cortex_cli.core.errors import CortexError
from cortex_cli.extractors import get_extractor, load_extractor
from cortex_cli.extractors.architectures import ExtractorConfig, build_extractor
from cortex_cli.extractors.subsets import ClassSpace, require_classes
from cortex_cli.images.generation import image_tokens
from cortex_cli.attribution import SaliencySettings, token_saliency
from cortex_cli.store.schema import ImageRow, SaliencyMapRow, SalientTokenRow

from extractor_helpers import learnable_tiny_model
from tests.search.test_edit import tiny_png

runner = CliRunner()
SMALL = ["--model", "tiny", "--width", "8", "--fc-width", "16", "--epochs", "2", "--batch-size", "8",
         "--train-per-class", "6", "--val-per-class", "2", "--test-per-class", "4"]
BIRDS = ["--arch", "ce", "--classes", "black grouse,goldfinch", "--name", "birds"]  # class ids 2 and 0 of the tiny model


@pytest.fixture
def learnable(store, tiny_model_files, tmp_path):
    return learnable_tiny_model(store, tiny_model_files, tmp_path)


def cli(db_url, *args):
    return runner.invoke(app, ["--db", db_url, *map(str, args)])


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_class_space_scatters_the_head_and_keeps_softmax_and_gradients_finite():
    cfg = ExtractorConfig("ce", in_channels=4, grid=8, width=4, fc_width=8, n_classes=5, class_ids=[3, 1])
    assert cfg.class_ids == [1, 3] and cfg.n_outputs == 2  # sorted: output i is class class_ids[i]
    assert "class_ids" not in ExtractorConfig("ce", grid=8, n_classes=5).to_dict()  # full runs keep their fingerprint
    torch.manual_seed(0)
    net = build_extractor(cfg).eval()
    wrapped = ClassSpace(net, cfg.class_ids, 5, "pair").eval()
    x = torch.randn(3, 4, 8, 8)
    out = wrapped(x)
    assert out.shape == (3, 5) and torch.equal(out[:, [1, 3]], net(x))
    assert (out[:, [0, 2, 4]] == torch.finfo(out.dtype).min).all()
    probs, logp = F.softmax(out, -1), F.log_softmax(out, -1)
    assert torch.isfinite(logp).all() and torch.isfinite((probs * logp).sum(-1)).all() and (probs[:, 0] == 0).all()
    # saliency of model class 3 through the wrapper is the head's saliency of its output 1
    settings = SaliencySettings(samples=2, top_n=3)
    via_wrapper = token_saliency(wrapped, x, [3, 3, 3], [0, 1, 2], settings)
    assert torch.isfinite(via_wrapper).all() and torch.allclose(via_wrapper, token_saliency(net, x, [1, 1, 1], [0, 1, 2], settings))
    with pytest.raises(CortexError, match=r"extractor 'pair' covers 2 classes \(ids 1, 3\), not class 0; .*cortex test-extractor"):
        token_saliency(wrapped, x, [3, 0, 3], [0, 1, 2], settings)
    require_classes(net, [0, 4])  # a full extractor covers everything
    with pytest.raises(CortexError, match="must lie in 0..4"):
        ExtractorConfig("ce", grid=8, n_classes=5, class_ids=[5])


def test_train_a_subset_extractor_store_its_label_map_and_refuse_another_subset(db_url, store, learnable, cortex_home):
    unnamed = cli(db_url, "train-extractor", "--arch", "ce", "--classes", "goldfinch", *SMALL)
    assert "needs its own name: add --name" in one_error_line(unnamed)
    trained = cli(db_url, "train-extractor", *BIRDS, *SMALL, "--json")
    assert trained.exit_code == 0, trained.output
    info = json.loads(trained.stdout)["result"]["info"]
    assert info["name"] == "birds" and info["config"]["class_ids"] == [0, 2] and info["config"]["n_classes"] == 4
    metrics = info["metrics"]
    assert (metrics["n_train"], metrics["n_val"], metrics["n_test"]) == (12, 4, 8)  # the subset's images only
    run = json.loads((cortex_home / "extractors" / "tiny" / "birds" / "run.json").read_text())
    assert run["config"]["class_ids"] == [0, 2]

    # the stored label map survives a reload; the head has 2 outputs and the loaded module speaks class ids
    stored = get_extractor(store, learnable, "birds")
    assert stored.config.class_ids == [0, 2]
    net = load_extractor(stored)
    assert isinstance(net, ClassSpace) and net.net.classifier[-1].out_features == 2
    vqgm = model_registry.load_model(learnable)
    with store.session() as s:
        ids = s.scalars(select(ImageRow.id).where(ImageRow.model_id == learnable.id).order_by(ImageRow.id).limit(6)).all()
    x = vqgm.embed(image_tokens(store, learnable, ids).long()).float()
    with torch.no_grad():
        logits, head = net(x), net.net(x)
    assert logits.shape == (6, 4) and torch.equal(logits[:, 0], head[:, 0]) and torch.equal(logits[:, 2], head[:, 1])
    assert (logits[:, [1, 3]] == torch.finfo(torch.float32).min).all()

    # Table 1 scores it on its own 2 classes' test images, ranking among them only
    table = cli(db_url, "test-extractor", "--model", "tiny", "--json")
    assert table.exit_code == 0, table.output
    [row] = json.loads(table.stdout)["extractors"]
    assert row["n_images"] == 8 and row["classes"] == ["goldfinch", "black grouse"]
    assert row["accuracy"] == metrics["test"] and row["accuracy"]["top3"] == 1.0
    text = cli(db_url, "test-extractor", "--model", "tiny", "--quiet")
    assert "birds covers 2 classes (its accuracy is among them): goldfinch, black grouse" in text.stdout

    same = cli(db_url, "train-extractor", "--arch", "ce", "--classes", "0,2", "--name", "birds", *SMALL, "--quiet")
    assert same.exit_code == 0 and "resumed after epoch 2" in same.stdout, same.output
    other = cli(db_url, "train-extractor", "--arch", "ce", "--classes", "goldfinch,water ouzel", "--name", "birds", *SMALL)
    error = one_error_line(other)
    assert "over 2 classes (ids 0, 2), not these 2 classes" in error and "--restart" in error
    full = cli(db_url, "train-extractor", "--arch", "ce", "--name", "birds", *SMALL)
    assert "over 2 classes (ids 0, 2), not these all classes" in one_error_line(full)


def test_index_edit_and_top_tokens_with_a_subset_extractor(db_url, store, learnable, tmp_path):
    assert cli(db_url, "train-extractor", *BIRDS, *SMALL, "--quiet").exit_code == 0
    outside = cli(db_url, "index", "--model", "tiny", "--class", "analog clock", "--extractor", "birds", "--images", "2")
    assert "extractor 'birds' covers 2 classes (ids 0, 2), not class 3" in one_error_line(outside)
    src = tmp_path / "bird.png"
    tiny_png(learnable, src)
    edit = cli(db_url, "edit", src, "--model", "tiny", "--target", "analog clock", "--extractor", "birds", "--region", "0:2,0:2",
               "--steps", "2", "--out", tmp_path / "out", "--quiet")
    assert "extractor 'birds' covers 2 classes" in one_error_line(edit)
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(SaliencyMapRow)) == 0

    res = cli(db_url, "index", "--model", "tiny", "--classes", "goldfinch,black grouse", "--extractor", "birds", "--images", "2",
              "--samples", "2", "--top-n", "3", "--json")
    assert res.exit_code == 0, res.output
    assert [(r["class_name"], r["added"], r["extractor"]) for r in json.loads(res.stdout)] == [("goldfinch", 2, "birds"), ("black grouse", 2, "birds")]
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(SalientTokenRow)) == 12

    many = cli(db_url, "top-tokens", "--classes", "black grouse,goldfinch", "--model", "tiny", "-k", "3", "--extractor", "birds", "--json")
    assert many.exit_code == 0, many.output
    tops = json.loads(many.stdout)
    assert [t["class_name"] for t in tops] == ["black grouse", "goldfinch"] and all(len(t["rows"]) == 3 for t in tops)
    single = json.loads(cli(db_url, "top-tokens", "goldfinch", "--model", "tiny", "-k", "3", "--json").stdout)
    assert single["rows"] == tops[1]["rows"]  # same query per concept; a single concept stays one object
    text = cli(db_url, "top-tokens", "--classes", "black grouse,goldfinch", "--model", "tiny", "-k", "3", "--baseline", "frequency")
    assert text.exit_code == 0, text.output
    assert text.stdout.count("salient tokens") == 2 and text.stdout.count("overlap with the frequency baseline") == 2
    assert text.stdout.index("black grouse:") < text.stdout.index("goldfinch:")
    assert max(len(line) for line in text.stdout.splitlines() if not line.startswith("overlap")) <= 80  # the tables
    assert "give one concept" in one_error_line(cli(db_url, "top-tokens", "goldfinch", "--classes", "goldfinch", "--model", "tiny"))
    assert "give one concept" in one_error_line(cli(db_url, "top-tokens", "--model", "tiny"))
