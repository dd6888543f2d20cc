"""`cortex report` from stored evaluation rows, and the eval commands' error paths through the CLI."""

from __future__ import annotations

import io
import json
import re
from dataclasses import asdict
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from cortex_cli.cli import app, render
from cortex_cli.evaluation.common import latest_variants, record_evaluation
from cortex_cli.evaluation.concept_level import ConceptLevelResult
from cortex_cli.evaluation.edit_eval import EditComparison, EditEvalResult, EditRow
from cortex_cli.evaluation.image_level import AucComparison, ImageLevelResult
from cortex_cli.evaluation.localization import LocalizationResult, MethodScores
from cortex_cli.evaluation.metrics import BootstrapCI, EditEffect, MaskingEffect
from cortex_cli.evaluation.report import TableSpec, fill_tables, tables_for, trust_tables, write_report
from cortex_cli.evaluation.stability import ExtractorStability, StabilityResult

from eval_helpers import register_small_extractor

runner = CliRunner()


def _results(plot: Path) -> dict[str, object]:
    eff = MaskingEffect(acc=0.9, p=0.8, acc_after=0.5, p_after=0.4, delta_acc=-0.4, delta_p=-0.4, mean_n=42.0)
    base = MaskingEffect(acc=0.9, p=0.8, acc_after=0.7, p_after=0.6, delta_acc=-0.2, delta_p=-0.2, mean_n=64.0)
    edit = EditEffect(0.75, 0.7, 0.02, 0.4, 0.3, -0.3, 0.28, 0.5)
    ci = BootstrapCI(0.05, 0.01, 0.09, 0.95, 8, 2000)
    return {
        "image-level": ImageLevelResult("tiny", ["ce"], ["toy"], 8, [0, 10, 20], "black", 3,
                                        {"toy": {"ce": [0.8, 0.5, 0.3], "random": [0.8, 0.7, 0.6]}},
                                        {"toy": {"ce": [1.0, 0.5, 0.25], "random": [1.0, 0.9, 0.8]}},
                                        {"toy": [0.0, 0.01, 0.02]}, {"toy": {"ce": 1.0}}, 12.5, plot_path=str(plot)),
        "concept-level": ConceptLevelResult("tiny", 8, 4, 16, ["toy"], ["ce", "baseline", "baseline@ce"],
                                            {"toy": {"ce": eff, "baseline": base, "baseline@ce": base}}, {}, 30.0),
        "edit": EditEvalResult("tiny", 8, 3, ["toy"], ["ce"], ["embedding", "token"], ["fixed", "oracle"], 150,
                               [EditRow("toy", "ce", k, m, k == "oracle", edit) for k in ("fixed", "oracle") for m in ("embedding", "token")],
                               [EditComparison("toy", "ce", k, k == "oracle", ci, ci, "win", "n.s.") for k in ("fixed", "oracle")],
                               {"toy": {"ce": {"fixed": "win", "oracle": "win"}}}, [], 60.0),
        "localization": LocalizationResult("tiny", 65, [1, 5], 0.5, 0.2,
                                           {"ce": MethodScores({"1": 0.9, "5": 0.8}, 0.9, {}),
                                            "random": MethodScores({"1": 0.2, "5": 0.2}, 0.2, {})}, 20.0),
        "stability": StabilityResult("tiny", 8, {"ce": ExtractorStability({"5": {"5": 0.6}, "20": {"5": 0.9}},
                                                                          {"5": {"5": 0.7}, "20": {"5": 1.0}}, {"5": 0.95})},
                                     40.0, settings={"default_samples": 20}),
    }


def test_report_gathers_the_latest_of_each_kind(store, tiny_model, tmp_path):
    plot = tmp_path / "reports" / "image_level.png"
    plot.parent.mkdir()
    plot.write_bytes(b"png")
    results = _results(plot)
    old = asdict(results["image-level"]) | {"fill": "mean"}
    record_evaluation(store, tiny_model, "image-level", {"images_per_class": 1}, old, "")
    for kind, res in results.items():
        record_evaluation(store, tiny_model, kind, {"images_per_class": 2, "extractors": "all"}, asdict(res), plot if kind == "image-level" else "")
    assert [ev.result["fill"] for ev in latest_variants(store, tiny_model)["image-level"]] == ["black"]  # no fill in the params: the paper's
    out = tmp_path / "reports" / "report.md"
    report = write_report(store, tiny_model, out)
    assert report.kinds == ["image-level", "concept-level", "edit", "localization", "stability"] and report.missing == ["sanity"]
    text = out.read_text()
    assert "![image-level](image_level.png)" in text  # relative to the report
    assert "black fill" in text and "mean fill" not in text  # the latest row wins
    assert "| toy | 90.0% | 0.800 |" in text  # Table 2: before-numbers, then one row per selection
    assert "| toy | CORTEX CE | 42.0 | -40.0% | -0.400 |" in text and "| toy | baseline (frequency) | 64.0 | -20.0% | -0.200 |" in text
    assert all(len(line) <= 80 for line in text.splitlines() if line.startswith("| toy | CORTEX CE | 42.0"))
    assert "| toy | CE | fixed | token | -0.300 | 0.280 | 50.0% |" in text  # Table 3 row: ΔP_orig, ΔP_targ, Acc_targ
    assert "ORACLE, an upper bound" in text and "| toy | CE | oracle (UB) | +0.050 | [+0.010, +0.090] | win |" in text
    assert "| CORTEX CE | 0.900 | 0.800 | 0.900 |" in text
    assert "fp32 vs bf16" in text
    assert "cortex eval image-level --model tiny --images-per-class 2" in text


def _with_fill(results: dict, fill: str, deletion: str, cortex_delta_p: float) -> tuple[dict, dict]:
    """(image-level, concept-level) result dicts of one fill: CE's deletion verdict vs random, CE's ΔP (the baseline's is -0.2)."""
    below, above = BootstrapCI(-0.1, -0.15, -0.05, 0.95, 8, 500), BootstrapCI(0.1, 0.05, 0.15, 0.95, 8, 500)
    ci = {"win": below, "loss": above, "n.s.": BootstrapCI(0.0, -0.1, 0.1, 0.95, 8, 500)}[deletion]
    image = asdict(results["image-level"]) | {"fill": fill, "auc": {"toy": {"ce": {"deletion": 0.3, "insertion": 0.6}}},
                                                "auc_ci": {"toy": {"ce": {"random": asdict(AucComparison(ci, above, deletion, "win"))}}}}
    concept = asdict(results["concept-level"])
    concept["table"]["toy"]["ce"]["delta_p"] = cortex_delta_p
    concept["settings"] = {"fill": fill}
    return image, concept


def test_report_keeps_the_newest_run_of_each_fill_and_says_where_the_conclusions_hold(store, tiny_model, tmp_path):
    results = _results(tmp_path / "none.png")
    for fill, deletion, delta_p in (("tokens", "win", -0.1), ("black", "win", -0.4), ("tokens", "loss", -0.1)):
        image, concept = _with_fill(results, fill, deletion, delta_p)
        record_evaluation(store, tiny_model, "image-level", {"fill": fill}, image, "")
        record_evaluation(store, tiny_model, "concept-level", {"fill": fill, "k": 8}, concept, "")
    text = write_report(store, tiny_model, tmp_path / "report.md").path
    text = Path(text).read_text()
    # one section per fill, the paper's black first; the newer tokens run replaced the older
    heads = [line for line in text.splitlines() if line.startswith("## Image level")]
    assert heads == ["## Image level (paper Figure 3): mean P(true class) after masking the top-n tokens",
                     "## Image level (paper Figure 3): mean P(true class) after masking the top-n tokens (tokens fill)"]
    assert text.index("## Trust") < text.index("## Image level")
    # black: CE's deletion AUC below random's (CI), ΔP -0.4 below the baseline's -0.2; tokens: reversed, and -0.1 above it
    assert "| black | deletion AUC < random's (CI) | CE | yes |" in text
    assert "| tokens | deletion AUC < random's (CI) | CE | no (reversed) |" in text
    assert "| black | ΔP(T*) < ΔP(frequency top-k) | CE | yes (-0.20) |" in text
    assert "| tokens | ΔP(T*) < ΔP(frequency, same n) | CE | no (+0.10) |" in text
    assert "| insertion AUC, CE - random, toy | +0.100 [+0.050, +0.150] (black fill) | win |" in text


def test_trust_summary_reads_the_sanity_verdict_and_the_realism_of_edits():
    step = {"layers": ["fc"], "spearman": 0.1, "top20_overlap": 0.3, "precision_at_5": 0.05}
    sanity = {"extractor": "ce", "random_floor": {"top20_overlap": 0.08, "precision_at_5": 0.1}, "cascade": [step],
              "label_permuted": step | {"top20_overlap": 0.05},
              "checks": {"cascade_overlap": False, "cascade_precision": True, "permuted_overlap": True, "permuted_precision": True}}
    ci = {"mean": -0.125, "low": -0.25, "high": -0.05, "level": 0.95, "n_units": 8, "resamples": 500}
    realism = {"generated": [{"p5": 1.0, "p95": 2.0}, {"p5": 1.5, "p95": 2.5}], "source_mean_nll": 2.0, "source_adversarial_share": 0.5,
               "rows": [{"extractor": "ce", "region": "fixed", "method": "token", "oracle": False, "mean_nll": 2.25, "adversarial_share": 0.25,
                         "mean_delta_nll": 0.25}],
               "comparisons": [{"extractor": "ce", "region": "fixed", "oracle": False, "delta_nll": ci, "verdict": "win"}]}
    [spec] = trust_tables({"sanity": [sanity], "edit": [{"realism": realism}]})
    assert spec.rows == [
        ["sanity, CE full cascade", "top-20 0.30 (<= 0.18), P@5 0.05 (<= 0.15)", "FAILED"],
        ["sanity, CE label-permuted", "top-20 0.05 (<= 0.18), P@5 0.05 (<= 0.15)", "passed"],
        ["realism, unedited sources", "prior NLL 2.00/token (generated p5-p95 1.00-2.50)", "50.0% adversarial"],
        ["realism, token (CE, fixed)", "prior NLL 2.25/token, +0.25 vs source", "25.0% adversarial"],
        ["realism, token - embedding (CE, fixed)", "NLL rise -0.125 [-0.250, -0.050]", "win"],
    ]
    assert fill_tables({}) == [] and trust_tables({}) == []


def test_report_cli_prints_the_trust_summary_whole_in_80_columns(db_url, store, tiny_model, tmp_path):
    results = _results(tmp_path / "none.png")
    for fill, deletion in (("black", "win"), ("tokens", "n.s.")):
        image, concept = _with_fill(results, fill, deletion, -0.3)
        record_evaluation(store, tiny_model, "image-level", {"fill": fill}, image, "")
        record_evaluation(store, tiny_model, "concept-level", {"fill": fill, "k": 8}, concept, "")
    res = _cli(db_url, "report", "--model", "tiny", "--out", str(tmp_path / "r.md"), "--json")
    trust = json.loads(res.output)["trust"]
    assert [t["columns"][:3] for t in trust] == [["check", "measured", "verdict"], ["fill", "conclusion", "extr."]]
    specs = [TableSpec(**t) for t in trust]
    out = Console(file=io.StringIO(), width=80, record=True)
    for spec in specs:
        render.table(spec.title, spec.columns, spec.rows, out=out)
    text = out.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
    printed = re.findall(r"[+-]?\d[\d.]*%?", text)
    for number in set(_numbers(specs)):
        assert printed.count(number) >= _numbers(specs).count(number), (number, text)
    plain = _cli(db_url, "report", "--model", "tiny", "--out", str(tmp_path / "r.md"))
    assert plain.exit_code == 0 and "insertion AUC, CE - random" in plain.output and "wrote" in plain.output


def test_tables_for_unknown_kind_is_an_error():
    from cortex_cli.core.errors import CortexError

    with pytest.raises(CortexError, match="unknown evaluation kind"):
        tables_for("nope", {})


def _cli(db_url, *args):
    return runner.invoke(app, ["--db", db_url, *args])


def test_report_cli_without_evaluations_says_what_to_run(db_url, tiny_model):
    res = _cli(db_url, "report", "--model", "tiny")
    assert res.exit_code == 1
    assert "no evaluations stored for model 'tiny'" in res.output and "cortex eval" in res.output
    assert "Traceback" not in res.output


def test_report_cli_writes_markdown(db_url, store, tiny_model, tmp_path):
    for kind, res in _results(tmp_path / "x.png").items():
        record_evaluation(store, tiny_model, kind, {}, asdict(res), "")
    out = tmp_path / "r.md"
    res = _cli(db_url, "report", "--model", "tiny", "--out", str(out), "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["path"] == str(out) and out.read_text().startswith("# CORTEX evaluation report")


def test_localization_on_a_non_mini_model_is_a_one_line_error(db_url, tiny_model):
    res = _cli(db_url, "eval", "localization", "--model", "tiny")
    assert res.exit_code == 1
    assert "only the mini world has" in res.output and res.output.strip().count("\n") == 0


def test_eval_errors_are_one_line(db_url, store, tiny_model, tmp_path):
    res = _cli(db_url, "eval", "image-level", "--model", "tiny")
    assert res.exit_code == 1 and "has no extractors" in res.output and "cortex train-extractor" in res.output
    register_small_extractor(store, tiny_model, tmp_path)
    res = _cli(db_url, "eval", "image-level", "--model", "tiny", "--fill", "pink")
    assert res.exit_code == 1 and "--fill must be one of black, mean, blur" in res.output
    res = _cli(db_url, "eval", "image-level", "--model", "tiny", "--ns", "5,x")
    assert res.exit_code == 1 and "--ns must be comma-separated integers" in res.output
    res = _cli(db_url, "eval", "image-level", "--model", "tiny")
    assert res.exit_code == 1 and "no judges known for model 'tiny'" in res.output
    res = _cli(db_url, "eval", "edit", "--model", "tiny")
    assert res.exit_code == 1 and "--pairs" in res.output
    res = _cli(db_url, "eval", "edit", "--model", "tiny", "--pairs", "0:1", "--regions", "fixed,oracle")
    assert res.exit_code == 1 and "oracle region needs ground-truth part masks" in res.output
    res = _cli(db_url, "eval", "image-level", "--model", "nosuch")
    assert res.exit_code == 1 and "no model named 'nosuch'" in res.output
    assert "Traceback" not in res.output


EVAL_DOCS = Path(__file__).resolve().parents[2] / "docs" / "eval"  # real outputs of `cortex eval all` on the mini model


def _stored(kind: str) -> dict:
    return json.loads((EVAL_DOCS / f"{kind.replace('-', '_')}.json").read_text())


def _all_methods(r: dict) -> dict:
    """The image-level result of `--method all`: selections 'ce/integrated-gradients', ... (the curves reused)."""
    methods = ("smoothgrad", "gradient", "gradient-x-input", "integrated-gradients")
    r = json.loads(json.dumps(r))
    for key in ("probability", "accuracy", "cortex_beats_random"):
        for judge, curves in r[key].items():
            r[key][judge] = {**{f"{x}/{m}": curves[x] for x in ("ce", "re") for m in methods},
                             **({"random": curves["random"]} if "random" in curves else {})}
    return r


def _edit_v1() -> dict:
    """An edit result stored before region kinds and intervals: one column per method x extractor."""
    cell = {"acc_orig": 1.0, "p_orig": 0.98, "p_targ": 0.012, "delta_p_orig": -0.412, "delta_p_targ": 0.377}
    return {"n_edits": 16, "steps": 500,
            "table": {j: {f"{m}/{x}": cell for x in ("ce", "re") for m in ("embedding", "token")} for j in ("resnet", "vit")}}


CASES = {
    **{kind: (kind, _stored(kind)) for kind in ("image-level", "concept-level", "edit", "localization", "stability")},
    "image-level --method all": ("image-level", _all_methods(_stored("image-level"))),
    "edit (v1)": ("edit", _edit_v1()),
}


def _numbers(specs: list[TableSpec]) -> list[str]:
    return [part for s in specs for row in s.rows for c in row for part in re.findall(r"[+-]?\d[\d.]*%?", c)]


@pytest.mark.parametrize("case", list(CASES))
def test_every_kind_of_table_fits_80_columns_whole(case):
    kind, result = CASES[case]
    specs = tables_for(kind, result)
    out = Console(file=io.StringIO(), width=80, record=True)
    for spec in specs:
        render.table(spec.title, spec.columns, spec.rows, out=out)
    text = out.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    printed = re.findall(r"[+-]?\d[\d.]*%?", text)
    for number in set(_numbers(specs)):  # every figure is there, as many times, uncut
        assert printed.count(number) >= _numbers(specs).count(number), (number, text)


def test_the_stored_localization_table_needed_folding():
    """The widest real table: at natural widths it is wider than 80, so the test above checks the fold."""
    spec = tables_for("localization", _stored("localization"))[0]
    natural = [max(len(c) for c in [col] + [row[i] for row in spec.rows]) for i, col in enumerate(spec.columns)]
    assert sum(natural) + 3 * len(natural) + 1 > 80
