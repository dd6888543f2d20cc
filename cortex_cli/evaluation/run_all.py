"""`cortex eval all`: every committed evaluation result regenerated from nothing, in one command.

A fresh SQLite store is made in a temporary directory (the bundled mini model and its CE/RE
extractors are registered into it), each evaluation runs with its default settings (the masking
evaluations once with the paper's black fill and once with `--fill tokens`), and the JSON files,
plots and `report.md` are written to the output directory. Nothing is read from the user's store
(the sanity check's label-permuted extractor is cached under $CORTEX_HOME by a fingerprint of its
whole recipe, so a reused one is the same network), so the output is a function of the code and
the bundled weights alone: two runs give the same bytes. Wall times go to `timings.json`, the one
file that differs between runs.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ..models import registry as model_registry
from ..core.results import Result
from ..extractors.registry import ensure_bundled_extractors
from ..core.progress import Progress, report
from ..core.environment import writable_dir
from ..store.database import open_store
from .concept_level import ConceptLevelSettings, run_concept_level
from .edit_eval import EditEvalSettings, run_edit_eval
from .image_level import ImageLevelSettings, run_image_level
from .localization import LocalizationSettings, run_localization
from .report import write_report
from .sanity import SanitySettings, run_sanity
from .stability import StabilitySettings, run_stability

# every run, in the order `cortex eval all` makes them: name -> (runner, preset key); each writes <stem>.json and a plot.
# The masking evaluations run twice: with the paper's black patches and with token fill (decoded grids), side by side.
RUNNERS = {
    "localization": (run_localization, "localization"), "image-level": (run_image_level, "image-level"),
    "image-level tokens": (run_image_level, "image-level tokens"), "concept-level": (run_concept_level, "concept-level"),
    "concept-level tokens": (run_concept_level, "concept-level tokens"), "edit": (run_edit_eval, "edit"),
    "stability": (run_stability, "stability"), "sanity": (run_sanity, "sanity"),
}


@dataclass(frozen=True)
class RunAllResult(Result):
    """What `run_all` wrote."""

    out: str
    kinds: list[str]
    report: str
    seconds: dict[str, float] = field(default_factory=dict)  # kind -> wall time


def _presets(quick: bool) -> dict[str, Any]:
    """Settings of each run (`RUNNERS`' preset keys): the defaults, or a tiny 'quick' variant for the determinism test."""
    if not quick:
        presets = {
            "localization": LocalizationSettings(), "image-level": ImageLevelSettings(), "concept-level": ConceptLevelSettings(),
            # every region kind: the paper's fixed box, the saliency box and the oracle, reported apart
            "edit": EditEvalSettings(regions=("all",)), "stability": StabilitySettings(), "sanity": SanitySettings(),
        }
    else:
        two = ("red-capped bird", "blue-capped bird")
        presets = {
            "localization": LocalizationSettings(images_per_class=1, ns=(1, 5), random_draws=2, samples=2, train_images=2, classes=two),
            "image-level": ImageLevelSettings(images_per_class=1, ns=(5, 20), random_draws=1, samples=2, classes=two, train_images=2),
            "concept-level": ConceptLevelSettings(k=4, train_images=2, images_per_class=1, samples=2, classes=two),
            # one part pair, one source per direction, a few steps, a two-image realism range
            "edit": EditEvalSettings(images_per_direction=1, steps=4, regions=("all",), opt_seeds=1, bootstrap=50, realism_images=2),
            "stability": StabilitySettings(images_per_class=1, seeds=(0, 1), sample_counts=(2, 4), ns=(5,), default_samples=2, classes=two),
            "sanity": SanitySettings(images_per_class=1, samples=2, random_draws=2, permuted_per_class=3, permuted_epochs=2,
                                     independent=False, classes=two),
        }
    presets["image-level tokens"] = replace(presets["image-level"], fill="tokens")
    presets["concept-level tokens"] = replace(presets["concept-level"], fill="tokens")
    return presets


def run_all(out: str | Path, *, device: torch.device | str = "cpu", quick: bool = False, progress: Progress | None = None) -> RunAllResult:
    """Run every evaluation on the bundled mini model in a fresh store; write JSON, plots and report.md to `out`.

    Args:
        out: the output directory (created).
        device: where models run.
        quick: tiny settings (seconds instead of minutes) for tests.
        progress: progress(done, total, info) callback, called once per evaluation.

    Returns:
        RunAllResult (kinds run, report path, wall times).

    Raises:
        CortexError: an unwritable output directory, or an evaluation's own error.
    """
    target = writable_dir(out, "to")
    runners = RUNNERS
    presets = _presets(quick)
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="cortex-eval-all-") as scratch:
        store = open_store(f"sqlite:///{Path(scratch) / 'cortex.db'}")
        try:
            model_registry.ensure_bundled(store)
            ensure_bundled_extractors(store)
            model = model_registry.get_model(store, model_registry.MINI_NAME)
            for i, (name, (runner, preset)) in enumerate(runners.items()):
                report(progress, i, len(runners), name)
                start = time.perf_counter()
                runner(store, model, settings=presets[preset], device=device, out_dir=target)
                seconds[name] = round(time.perf_counter() - start, 1)
            report(progress, len(runners), len(runners), "report")
            written = write_report(store, model, target / "report.md", reproducible=True)
        finally:
            store.close()
    (target / "timings.json").write_text(json.dumps({"seconds": seconds, "device": str(device), "quick": quick}, indent=2) + "\n")
    return RunAllResult(str(target), list(runners), written.path, seconds)
