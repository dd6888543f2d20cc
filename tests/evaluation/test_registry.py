"""evaluation/registry.py: one list of evaluations, each module declaring what the report, the API and the CLI read;
adding one is its module and one entry (shown here with an evaluation registered at run time)."""

from __future__ import annotations

import dataclasses
import inspect
import sys
import types
from dataclasses import dataclass, field
from typing import ClassVar

import pytest

from cortex_cli import Workspace
from cortex_cli.core.errors import CortexError
from cortex_cli.evaluation import common, registry, report, run_all
from cortex_cli.evaluation.common import EvaluationResult
from cortex_cli.evaluation.registry import EVALUATIONS, KINDS, evaluation_named, prepare_evaluation
from cortex_cli.evaluation.tables import TableSpec
from cortex_cli.models import registry as model_registry


def test_the_kinds_in_the_report_s_order():
    assert KINDS == ("image-level", "concept-level", "edit", "localization", "stability", "sanity") == tuple(EVALUATIONS)
    assert not hasattr(common, "KINDS")  # one list: the registry's


@pytest.mark.parametrize("kind", KINDS)
def test_each_module_declares_what_its_readers_need(kind):
    m = EVALUATIONS[kind]
    assert m.KIND == kind and m.TITLE and dataclasses.is_dataclass(m.SETTINGS)
    assert "judge_weights" in inspect.signature(m.run).parameters if m.USES_JUDGES else "judge_weights" not in inspect.signature(m.run).parameters
    assert set(inspect.signature(m.run).parameters) >= {"store", "model", "extractors", "settings", "device", "out_dir", "progress"}
    results = [c for c in vars(m).values() if isinstance(c, type) and issubclass(c, EvaluationResult) and c.__module__ == m.__name__]
    assert [r.KIND for r in results] == [kind]  # its result class says its kind
    for quick in (False, True):
        runs = m.presets(quick)
        assert runs and all(name.startswith(kind) and isinstance(s, m.SETTINGS) for name, s in runs.items())
    assert report.TITLES[kind] == m.TITLE


def test_an_unknown_kind_is_one_line_naming_the_known_ones():
    with pytest.raises(CortexError) as err:
        evaluation_named("nope")
    assert str(err.value) == ("unknown evaluation 'nope'; choose one of image-level, concept-level, edit, localization, "
                              "stability, sanity")


def test_prepare_evaluation_checks_everything_before_a_store_is_opened():
    run = prepare_evaluation("localization", {"images_per_class": 3})
    assert run.func is EVALUATIONS["localization"].run and run.keywords["settings"].images_per_class == 3
    assert "judge_weights" not in run.keywords
    judged = next(k for k in KINDS if EVALUATIONS[k].USES_JUDGES)
    assert prepare_evaluation(judged, {}, judge_weights="w/").keywords["judge_weights"] == "w/"
    assert prepare_evaluation(judged, {}).keywords["judge_weights"] is None
    for kind, settings, weights, message in [("fairness", {}, None, "unknown evaluation 'fairness'"),
                                             ("localization", {"images_per_clas": 3}, None, "localization evaluation: .*its settings are"),
                                             ("stability", {}, "w/", "the stability evaluation uses no judges")]:
        with pytest.raises(CortexError, match=message):
            prepare_evaluation(kind, settings, weights)


# -- a new evaluation: one module (here built at run time) and one entry -----------------------------------------

@dataclass
class CountSettings:
    images_per_class: int = 1
    classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class CountResult(EvaluationResult):
    KIND: ClassVar[str] = "count"
    model: str
    n_classes: int
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)
    json_path: str = ""
    plot_path: str = ""
    evaluation_id: int = 0


def _run(store, model, *, extractors="all", settings=CountSettings(), device="cpu", out_dir=None, progress=None):
    run = common.Evaluation(store, model, common.prepare_out_dir(out_dir, model), [], model_registry.classes(store, model), [], device,
                            progress)
    result = CountResult(model.name, len(run.classes), settings=dataclasses.asdict(settings))
    return common.finish(run, "count", result, "", common.settings_params(settings, extractors))


def _tables(r: dict) -> list[TableSpec]:
    return [TableSpec(f"classes of {r['model']}", ["classes"], [[str(r["n_classes"])]])]


@pytest.fixture
def count_evaluation(monkeypatch):
    module = types.ModuleType("count_evaluation")
    module.__dict__.update(KIND="count", TITLE="Count: the model's classes", SETTINGS=CountSettings, USES_JUDGES=False, run=_run,
                           tables=_tables, presets=lambda quick: {"count": CountSettings()}, CountResult=CountResult)
    monkeypatch.setitem(sys.modules, "count_evaluation", module)
    monkeypatch.setattr(CountResult, "__module__", "count_evaluation")  # its tables are its module's
    monkeypatch.setitem(registry.EVALUATIONS, "count", module)  # the one line
    return module


def test_a_registered_evaluation_is_run_reported_and_tabled(count_evaluation, tiny_model, db_url, tmp_path):
    with Workspace(home=tmp_path / "home", db=db_url, device="cpu") as ws:
        _evaluate_count(ws, tmp_path)


def _evaluate_count(ws: Workspace, tmp_path) -> None:
    result = ws.evaluate("count", model="tiny", out=tmp_path / "out", images_per_class=2)
    assert result.n_classes == 4 and result.settings == {"images_per_class": 2, "classes": ()}
    assert result.table_rows() == [{"classes": "4"}]
    with pytest.raises(CortexError, match="count evaluation: .*its settings are images_per_class, classes"):
        ws.evaluate("count", model="tiny", steps=3)
    with pytest.raises(CortexError, match="uses no judges"):
        ws.evaluate("count", model="tiny", judge_weights=tmp_path)
    written = ws.report(model="tiny", out=tmp_path / "report.md")
    assert written.kinds == ["count"] and "count" not in written.missing
    text = (tmp_path / "report.md").read_text()
    assert "## Count: the model's classes" in text and "`cortex eval count --model tiny --images-per-class 2`" in text
    assert "| 4 |" in text
    assert "count" in run_all.runs(quick=True)


def test_tables_for_reads_the_registry_and_the_audit(count_evaluation):
    assert report.tables_for("count", {"model": "tiny", "n_classes": 3})[0].rows == [["3"]]
    assert report.tables_for("audit", {"neutral": "bird", "images": 2, "split": "test", "cliff_delta": 0.5, "ties": 0.0,
                                       "groups": []})[0].title.startswith("bird: 2 test images audited; Cliff's delta +0.50")
    with pytest.raises(CortexError, match="known: image-level, .*, sanity, count, audit"):
        report.tables_for("nope", {})
