"""`cortex eval all`: every committed evaluation result regenerated from nothing, in one command.

A fresh SQLite store is made in a temporary directory (the bundled mini model and its CE/RE
extractors are registered into it), each registered evaluation runs with its default settings (its
`presets`: the masking evaluations once with the paper's black fill and once with `--fill tokens`), and the JSON files,
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
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from ..models import registry as model_registry
from ..core.results import Result
from ..extractors.registry import ensure_bundled_extractors
from ..core.progress import Progress, report
from ..core.environment import writable_dir
from ..store.database import open_store
from .registry import EVALUATIONS
from .report import write_report

# `cortex eval all` runs the ground-truth check first (the order its `--json` and timings.json have always listed),
# then every other evaluation in the registry's order
RUN_FIRST = ("localization",)


@dataclass(frozen=True)
class RunAllResult(Result):
    """What `run_all` wrote."""

    out: str
    kinds: list[str]
    report: str
    seconds: dict[str, float] = field(default_factory=dict)  # kind -> wall time


def runs(quick: bool = False) -> dict[str, tuple[ModuleType, Any]]:
    """Every run of `cortex eval all`, in order: name -> (evaluation module, settings), from each module's `presets`
    (the masking evaluations run twice: with the paper's black patches and with token fill, side by side)."""
    order = sorted(EVALUATIONS.values(), key=lambda m: m.KIND not in RUN_FIRST)  # stable: the registry's order otherwise
    return {name: (m, settings) for m in order for name, settings in m.presets(quick).items()}


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
    planned = runs(quick)
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="cortex-eval-all-") as scratch:
        store = open_store(f"sqlite:///{Path(scratch) / 'cortex.db'}")
        try:
            model_registry.ensure_bundled(store)
            ensure_bundled_extractors(store)
            model = model_registry.get_model(store, model_registry.MINI_NAME)
            for i, (name, (evaluation, settings)) in enumerate(planned.items()):
                report(progress, i, len(planned), name)
                start = time.perf_counter()
                evaluation.run(store, model, settings=settings, device=device, out_dir=target)
                seconds[name] = round(time.perf_counter() - start, 1)
            report(progress, len(planned), len(planned), "report")
            written = write_report(store, model, target / "report.md", reproducible=True)
        finally:
            store.close()
    (target / "timings.json").write_text(json.dumps({"seconds": seconds, "device": str(device), "quick": quick}, indent=2) + "\n")
    return RunAllResult(str(target), list(planned), written.path, seconds)
