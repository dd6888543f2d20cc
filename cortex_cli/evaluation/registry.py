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

from types import ModuleType

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


__all__ = ["EVALUATIONS", "KINDS", "evaluation_named"]
