"""CLI: `cortex index --method` makes one run per method over the same images, and each run is queryable."""

from __future__ import annotations

import json

import pytest

from cortex_cli.store import index as index_store
from cortex_cli.store.run_counts import images_indexed
from tests.cli.test_index_cmd import cli, index, setup  # noqa: F401  (setup is a fixture: the tiny model, an extractor, 8 images)

pytestmark = pytest.mark.both_backends


def test_two_methods_make_two_runs_on_the_same_images_and_both_are_queryable(setup, store, tiny_model, tmp_path):
    db = setup
    smooth = json.loads(index(db).stdout)
    res = index(db, "goldfinch", "--method", "gradient-x-input")
    assert res.exit_code == 0, res.output
    gxi = json.loads(res.stdout)
    assert gxi["run_id"] != smooth["run_id"] and (gxi["added"], gxi["images"]) == (4, 4)
    assert smooth["settings"]["method"] == "smoothgrad" and smooth["settings"]["samples"] == 2
    noise = {k: gxi["settings"][k] for k in ("method", "samples", "alpha", "seed")}
    assert noise == {"method": "gradient-x-input", "samples": 1, "alpha": 0.0, "seed": 0}  # no noise tunnel: neutral values
    assert json.loads(index(db, "goldfinch", "--method", "gradient-x-input").stdout)["skipped"] == 4  # resumable per method

    runs = {r.id: r for r in index_store.runs(store, tiny_model.id)}
    assert {runs[smooth["run_id"]].method, runs[gxi["run_id"]].method} == {"smoothgrad", "gradient-x-input"}
    for run_id in (smooth["run_id"], gxi["run_id"]):
        assert images_indexed(store, run_id, "train") == 4  # goldfinch's, the only class indexed

    by_method = {}
    for method in ("smoothgrad", "gradient-x-input"):
        res = cli(db, "top-tokens", "goldfinch", "--model", "tiny", "-k", "5", "--method", method, "--json")
        assert res.exit_code == 0, res.output
        top = json.loads(res.stdout)
        assert top["images_indexed"] == 4
        by_method[method] = top["run_id"]
    assert by_method == {"smoothgrad": smooth["run_id"], "gradient-x-input": gxi["run_id"]}
    by_id = json.loads(cli(db, "top-tokens", "goldfinch", "--model", "tiny", "--run", str(smooth["run_id"]), "--json").stdout)
    assert by_id["run_id"] == smooth["run_id"]
    none = cli(db, "top-tokens", "goldfinch", "--model", "tiny", "--method", "gradient")
    assert none.exit_code == 1 and "--method gradient" in none.output


def test_integrated_gradients_states_its_baseline_in_the_run(setup):
    pytest.importorskip("captum")
    smooth = json.loads(index(setup).stdout)
    res = index(setup, "goldfinch", "--method", "integrated-gradients", "--ig-steps", "4", "--ig-baseline", "codebook-mean")
    assert res.exit_code == 0, res.output
    ig = json.loads(res.stdout)
    settings = ig["settings"]
    assert (settings["method"], settings["steps"], settings["baseline"]) == ("integrated-gradients", 4, "codebook-mean")
    assert ig["run_id"] != smooth["run_id"] and ig["added"] == smooth["added"] == 4  # one index, two runs over the same images


@pytest.mark.parametrize("args, message", [
    (["--method", "occlusion"], "unknown attribution method 'occlusion'; use one of smoothgrad, gradient, gradient-x-input, integrated-gradients"),
    (["--method", "integrated-gradients", "--ig-baseline", "ones"], "--ig-baseline must be one of zeros, codebook-mean"),
])
def test_bad_methods_are_one_line_errors(setup, args, message):
    res = index(setup, "goldfinch", *args)
    assert res.exit_code == 1 and message in res.output and "Traceback" not in res.output


def test_explain_with_another_method(setup, tmp_path):
    png = tmp_path / "g.png"
    assert cli(setup, "show", "1", "--model", "tiny", "--out", str(png)).exit_code == 0
    res = cli(setup, "explain", str(png), "--model", "tiny", "--method", "gradient", "--top-n", "3", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["settings"]["method"] == "gradient" and len(out["top"]) == 3
