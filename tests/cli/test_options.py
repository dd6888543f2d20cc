"""One option vocabulary: a flag means one thing everywhere, `--seed` is described once, defaults come from settings."""

from __future__ import annotations

import pytest
import typer.main
from typer.testing import CliRunner

from cortex_cli.attribution import SaliencySettings
from cortex_cli.cli import app, eval_cmd, index_cmd
from cortex_cli.cli.options import SEED_HELP
from cortex_cli.evaluation.concept_level import ConceptLevelSettings
from cortex_cli.evaluation.edit_eval import EditEvalSettings
from cortex_cli.evaluation.image_level import ImageLevelSettings
from cortex_cli.evaluation.localization import LocalizationSettings
from cortex_cli.evaluation.stability import StabilitySettings
from cortex_cli.miniworld.training import MiniRecipe

runner = CliRunner()


def _commands(group, path: tuple[str, ...] = ()):
    """(path, command) of every leaf command (typer vendors its own click, so duck-typed)."""
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


COMMANDS = dict(_commands(typer.main.get_command(app)))


def test_every_short_flag_means_one_option_across_commands():
    meaning: dict[str, set[str]] = {}
    for cmd in COMMANDS.values():
        for param in cmd.params:
            if param.param_type_name == "option":
                longs = [o for o in param.opts if o.startswith("--")]
                for short in (o for o in param.opts if not o.startswith("--")):
                    meaning.setdefault(short, set()).update(longs or [short])
    clashes = {short: longs for short, longs in meaning.items() if len(longs) > 1}
    assert not clashes
    assert meaning["-e"] == {"--extractor"} and meaning["-n"] == {"--images"}


def test_seed_is_described_the_same_way_by_every_command_that_has_one():
    with_seed = {" ".join(path): param for path, cmd in COMMANDS.items() for param in cmd.params if "--seed" in getattr(param, "opts", ())}
    expected = {"index", "explain", "show", "edit", "optimize", "demo", "train-extractor", "train-mini", "mini report",
                "eval image-level", "eval concept-level", "eval edit", "eval localization"}
    assert expected <= set(with_seed)
    assert {name: p.help for name, p in with_seed.items() if p.help != SEED_HELP} == {}
    # the images a command reads are chosen by --first-seed, never by --seed
    for name in ("index", "generate", "eval image-level", "eval concept-level", "eval edit", "eval localization", "eval stability"):
        assert any("--first-seed" in getattr(p, "opts", ()) for p in COMMANDS[tuple(name.split())].params), name
    assert "--seed" not in [o for p in typer.main.get_command(app).params for o in getattr(p, "opts", ())]  # no global --seed
    # train-mini cannot read MiniRecipe at start-up (torchvision); its default must still be the recipe's
    assert with_seed["train-mini"].default == MiniRecipe().seed


@pytest.mark.parametrize("kind, runner_name, defaults", [
    ("image-level", "run_image_level", ImageLevelSettings()),
    ("concept-level", "run_concept_level", ConceptLevelSettings()),
    ("edit", "run_edit_eval", EditEvalSettings()),
    ("localization", "run_localization", LocalizationSettings()),
    ("stability", "run_stability", StabilitySettings()),
])
def test_eval_commands_defaults_are_the_settings_dataclass_defaults(monkeypatch, db_url, kind, runner_name, defaults):
    seen = {}

    def capture(store, model, *, settings, **_):
        seen["settings"] = settings
        raise SystemExit(0)

    monkeypatch.setattr(eval_cmd, runner_name, capture)
    runner.invoke(app, ["--db", db_url, "eval", kind, "--quiet"])
    assert seen["settings"] == defaults
    runner.invoke(app, ["--db", db_url, "eval", kind, "--quiet", "--first-seed", "5"])
    assert seen["settings"].first_seed == 5


def test_index_defaults_are_the_saliency_settings_and_seed_keys_only_the_noise(monkeypatch, db_url):
    seen = {}

    def capture(app_state, dist, class_spec, classes, model, extractor, split, images, first_seed, settings, *rest):
        seen.update(images=images, first_seed=first_seed, settings=settings)

    monkeypatch.setattr(index_cmd, "_index", capture)
    assert runner.invoke(app, ["--db", db_url, "index", "--class", "0"]).exit_code == 0
    assert seen["settings"] == SaliencySettings() and (seen["images"], seen["first_seed"]) == (100, 0)
    assert runner.invoke(app, ["--db", db_url, "index", "--class", "0", "-n", "8", "--first-seed", "3", "--seed", "9"]).exit_code == 0
    assert seen["settings"] == SaliencySettings(seed=9) and (seen["images"], seen["first_seed"]) == (8, 3)


def test_demo_honours_seed(monkeypatch, db_url, tmp_path):
    seen = {}

    def capture(store, out, device, *, progress, concept, seed):
        seen["seed"] = seed
        raise SystemExit(0)

    monkeypatch.setattr(index_cmd, "run_demo", capture)
    runner.invoke(app, ["--db", db_url, "demo", "--out", str(tmp_path), "--seed", "4", "--quiet"])
    assert seen == {"seed": 4}
