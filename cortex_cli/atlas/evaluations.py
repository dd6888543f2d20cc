"""The atlas's evaluations page: can these explanations be trusted, and every stored evaluation's tables and plot.

The page is the report (`evaluation/report.py`) as HTML: the trust summary first (the sanity cascade's
verdict, insertion AUCs against random, whether the paper's masking conclusions hold under each fill,
the prior NLL of edits), then one section per stored run (the newest of each kind, and of each fill for
the masking evaluations) with the same tables as `cortex report` and its plot. `html.render_evaluations`
draws it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..evaluation.common import MASKING_KINDS, PAPER_FILL, StoredEvaluation
from ..evaluation.registry import KINDS
from ..evaluation.report import TITLES, TableSpec, command_line, tables_for, trust_tables

PATH = "evaluations.html"


@dataclass(frozen=True)
class EvaluationSection:
    """One stored run: heading, the command that made it, its tables and its plot (a site path)."""

    anchor: str  # the id of its heading: the kind, with the fill when not the paper's
    title: str
    command: str
    created_at: str
    tables: list[TableSpec]
    plot: str | None
    unreadable: str = ""  # why no tables: a stored result of an older layout than this version's tables read


@dataclass(frozen=True)
class EvaluationsPage:
    """The trust summary and the sections, in the report's order."""

    trust: list[TableSpec]
    sections: list[EvaluationSection]
    trust_unreadable: str = ""  # why no trust summary could be read off the stored runs


def anchor_of(kind: str, fill: str = PAPER_FILL) -> str:
    """The heading id of a run on the page (`evaluations.html#image-level-tokens`)."""
    return kind if fill == PAPER_FILL else f"{kind}-{fill}"


def evaluations_page(model: str, variants: dict[str, list[StoredEvaluation]], copy_plot: Callable[[str], str | None]) -> EvaluationsPage:
    """The page of `variants` (kind -> newest runs, `evaluation.common.latest_variants`); `copy_plot` puts a plot into the site."""
    sections = []
    for kind in KINDS:
        for ev in variants.get(kind, []):
            fill = str(ev.params.get("fill", PAPER_FILL)) if kind in MASKING_KINDS else PAPER_FILL
            command = command_line(kind, model, ev.params)
            tables, unreadable = _read(lambda: tables_for(kind, ev.result), command)
            sections.append(EvaluationSection(
                anchor_of(kind, fill), TITLES[kind] + ("" if fill == PAPER_FILL else f" ({fill} fill)"), command, ev.created_at,
                tables, copy_plot(ev.plot_path) if ev.plot_path else None, unreadable))
    trust, unreadable = _read(lambda: trust_tables({kind: [ev.result for ev in evs] for kind, evs in variants.items()}),
                              "the evaluations whose sections say so")
    return EvaluationsPage(trust, sections, unreadable)


def _read(tables: Callable[[], list[TableSpec]], rerun: str) -> tuple[list[TableSpec], str]:
    """(tables, "") or ([], why): a result stored by an older version may lack fields today's tables read."""
    try:
        return tables(), ""
    except (KeyError, TypeError, IndexError) as exc:
        return [], f"stored in an older layout than this version reads (no field {exc}); rerun {rerun} to see it here"

__all__ = ["PATH", "EvaluationSection", "EvaluationsPage", "anchor_of", "evaluations_page"]
