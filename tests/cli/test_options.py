"""One option vocabulary: a flag means one thing everywhere, `--seed` is described once, defaults come from settings."""

from __future__ import annotations

import re

import pytest
import typer.main
from typer.testing import CliRunner

from cortex_cli import demo
from cortex_cli.index import build as indexing
from cortex_cli.attribution import SaliencySettings
from cortex_cli.cli import app
from cortex_cli.cli.options import MEANINGS, SEED_HELP
from cortex_cli.evaluation import concept_level, edit_eval, image_level, localization, stability
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


ROOT = typer.main.get_command(app)
COMMANDS = dict(_commands(ROOT))


def _long_flags() -> dict[str, list[tuple[str, object]]]:
    """long flag -> [(command, its click parameter)] over every command and the global options."""
    found: dict[str, list[tuple[str, object]]] = {}
    for name, params in [("cortex", ROOT.params)] + [(" ".join(p), c.params) for p, c in COMMANDS.items()]:
        for param in params:
            if param.param_type_name == "option":
                for opt in (o for o in param.opts if o.startswith("--") and o != "--help"):
                    found.setdefault(opt, []).append((name, param))
    return found


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


def test_every_shared_long_flag_says_its_one_meaning_in_every_command():
    flags = _long_flags()
    worded = {flag for flag, uses in flags.items() if len({param.help for _, param in uses}) > 1}  # help differs by command
    assert worded - set(MEANINGS) == set(), "a flag whose help differs by command needs its meaning in cli/options.py MEANINGS"
    assert set(MEANINGS) - set(flags) == set(), "MEANINGS names a flag no command has"
    wrong = [f"{name} {flag}: {param.help!r} does not say {MEANINGS[flag]!r}"
             for flag in MEANINGS for name, param in flags[flag] if not re.search(MEANINGS[flag], param.help or "", re.I)]
    assert wrong == []
    # a switch in one command is a switch everywhere (models list's class listing once was a second --classes)
    kinds = {flag: {bool(param.is_flag) for _, param in uses} for flag, uses in flags.items()}
    assert {flag for flag, k in kinds.items() if len(k) > 1} == set()


def test_the_three_flags_that_once_meant_two_things():
    flags = _long_flags()
    # --baseline ranks tokens (top-tokens, atlas); Integrated Gradients' baseline embedding is --ig-baseline
    assert {name for name, _ in flags["--baseline"]} == {"top-tokens", "atlas"}
    assert {name for name, _ in flags["--ig-baseline"]} == {"index", "explain"}
    # --steps is optimisation steps (edit, optimize, eval edit); integration points are --ig-steps
    assert {name for name, _ in flags["--steps"]} == {"edit", "optimize", "eval edit"}
    assert {name for name, _ in flags["--ig-steps"]} == {"index", "explain"}
    # --method is an attribution method everywhere; edit's token-vs-embedding is --space
    assert "edit" not in {name for name, _ in flags["--method"]} and {name for name, _ in flags["--space"]} == {"edit"}
    # --alpha is SmoothGrad's noise scale; the edit regulariser's weight is --l2-weight
    assert {name for name, _ in flags["--alpha"]} == {"index", "explain"}
    assert {name for name, _ in flags["--l2-weight"]} == {"edit", "optimize"}


def test_seed_is_described_the_same_way_by_every_command_that_has_one():
    with_seed = {" ".join(path): param for path, cmd in COMMANDS.items() for param in cmd.params if "--seed" in getattr(param, "opts", ())}
    expected = {"index", "explain", "show", "edit", "optimize", "demo", "train-extractor", "train-mini", "mini report",
                "eval image-level", "eval concept-level", "eval edit", "eval localization"}
    assert expected <= set(with_seed)
    assert {name: p.help for name, p in with_seed.items() if p.help != SEED_HELP} == {}
    # the images a command reads are chosen by --first-seed, never by --seed
    for name in ("index", "generate", "eval image-level", "eval concept-level", "eval edit", "eval localization", "eval stability"):
        assert any("--first-seed" in getattr(p, "opts", ()) for p in COMMANDS[tuple(name.split())].params), name
    assert "--seed" not in [o for p in ROOT.params for o in getattr(p, "opts", ())]  # no global --seed
    assert with_seed["train-mini"].default == MiniRecipe().seed


@pytest.mark.parametrize("kind, module, defaults", [
    ("image-level", image_level, ImageLevelSettings()),
    ("concept-level", concept_level, ConceptLevelSettings()),
    ("edit", edit_eval, EditEvalSettings()),
    ("localization", localization, LocalizationSettings()),
    ("stability", stability, StabilitySettings()),
])
def test_eval_commands_defaults_are_the_settings_dataclass_defaults(monkeypatch, db_url, kind, module, defaults):
    seen = {}

    def capture(store, model, *, settings, **_):
        seen["settings"] = settings
        raise SystemExit(0)

    monkeypatch.setattr(module, "run", capture)  # what the registry's readers call
    runner.invoke(app, ["--db", db_url, "eval", kind, "--quiet"])
    assert seen["settings"] == defaults
    runner.invoke(app, ["--db", db_url, "eval", kind, "--quiet", "--first-seed", "5"])
    assert seen["settings"].first_seed == 5


def test_index_defaults_are_the_saliency_settings_and_seed_keys_only_the_noise(monkeypatch, db_url):
    seen = {}

    def capture(store, model, extractor_info, jobs, *, n_images, image_seed, settings, **_):
        seen.update(images=n_images, first_seed=image_seed, settings=settings)
        raise SystemExit(0)

    monkeypatch.setattr(indexing, "index_jobs", capture)
    runner.invoke(app, ["--db", db_url, "index", "--class", "0"])
    assert seen["settings"] == SaliencySettings() and (seen["images"], seen["first_seed"]) == (100, 0)
    runner.invoke(app, ["--db", db_url, "index", "--class", "0", "-n", "8", "--first-seed", "3", "--seed", "9", "--ig-steps", "7"])
    assert seen["settings"] == SaliencySettings(seed=9, steps=7) and (seen["images"], seen["first_seed"]) == (8, 3)


def test_demo_honours_seed(monkeypatch, db_url, tmp_path):
    seen = {}

    def capture(store, out, device, *, progress, concept, seed):
        seen["seed"] = seed
        raise SystemExit(0)

    monkeypatch.setattr(demo, "run_demo", capture)
    runner.invoke(app, ["--db", db_url, "demo", "--out", str(tmp_path), "--seed", "4", "--quiet"])
    assert seen == {"seed": 4}
