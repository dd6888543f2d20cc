"""The evaluations by kind: adding one is its module and one entry here (as `attribution.registry.METHODS`).

Each module declares what the report, `cortex eval all`, `Workspace.evaluate` and `cortex eval` read:

- `KIND` (the name: `cortex eval <kind>`, the stored rows' kind) and `TITLE` (its section of the report);
- `SETTINGS`, its settings dataclass, and `USES_JUDGES` (whether its runner takes `judge_weights`);
- `run(store, model, *, extractors, settings, device, out_dir, progress[, judge_weights])`: compute, write
  `<kind>.json` and a plot, store the row, return the result;
- `tables(result_dict) -> list[TableSpec]`: the tables of a stored result (`evaluation.tables`);
- `presets(quick) -> {name: settings}`: its runs in `cortex eval all`.

The order here is the report's (and the atlas'): sections follow it.
"""

from __future__ import annotations

from dataclasses import fields
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from ..core.errors import CortexError
from . import concept_level, edit_eval, image_level, localization, sanity, stability

EVALUATIONS: dict[str, ModuleType] = {m.KIND: m for m in (image_level, concept_level, edit_eval, localization, stability, sanity)}
KINDS = tuple(EVALUATIONS)


def evaluation_named(kind: str) -> ModuleType:
    """The module of evaluation `kind`; CortexError listing the known ones."""
    try:
        return EVALUATIONS[kind]
    except KeyError:
        raise CortexError(f"unknown evaluation {kind!r}; choose one of {', '.join(EVALUATIONS)}") from None


def prepare_evaluation(kind: str, settings: dict[str, Any], judge_weights: str | Path | None = None) -> Callable[..., Any]:
    """The `run` of evaluation `kind` with its settings dataclass built from `settings` (and `judge_weights` where it uses
    judges): call it as `run(store, model, extractors=..., device=..., out_dir=..., progress=...)`. Everything is checked
    here, before a store is opened.

    Raises:
        CortexError: an unknown kind, a setting the kind does not have (naming the ones it has), or judge weights for an
            evaluation that uses no judges.
    """
    evaluation = evaluation_named(kind)
    try:
        chosen = evaluation.SETTINGS(**settings)
    except TypeError as exc:
        known = ", ".join(f.name for f in fields(evaluation.SETTINGS))
        raise CortexError(f"{kind} evaluation: {exc}; its settings are {known}") from None
    options = {"judge_weights": judge_weights} if evaluation.USES_JUDGES else {}
    if judge_weights is not None and not evaluation.USES_JUDGES:
        raise CortexError(f"the {kind} evaluation uses no judges; drop judge_weights")
    return partial(evaluation.run, settings=chosen, **options)


__all__ = ["EVALUATIONS", "KINDS", "evaluation_named", "prepare_evaluation"]
