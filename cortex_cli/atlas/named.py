"""The atlas's pages of named concepts (`cortex concepts add`): members, T*_concept, localisation, audits.

A named concept is explained in a run of its own target (a class page's run explains each image's
class), so its page reads the concept's newest run of the atlas run's extractor and method; a
concept not indexed yet gets a page that says which command indexes it. What the stored
evaluations say about it: the newest localization evaluation that scored it (its ground truth and
each ranking's precision), and every stored audit that named it as the neutral concept or a group.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ..models.concepts import ConceptInfo
from ..core.errors import CortexError
from ..index.rankings import pick_run, top_tokens
from ..store import evaluations as evaluation_store
from .pages import Site


def named_path(concept: ConceptInfo) -> str:
    """The named concept's page in the site: named/<slug>.html."""
    slug = re.sub(r"[^a-z0-9]+", "-", concept.name.lower()).strip("-")[:48] or "concept"
    return f"named/{slug}.html"


@dataclass
class NamedToken:
    rank: int
    token: int
    count: int
    n_images: int
    swatch: str
    in_baseline: bool


@dataclass
class AuditNote:
    """One stored audit that named this concept."""

    evaluation_id: int
    created_at: str
    neutral: str
    images: int
    groups: list[dict[str, Any]]  # name, tokens, share, share_ci
    cliff_delta: float | None
    cliff_delta_ci: list[float] | None
    plot: str | None = None


@dataclass
class NamedConceptPage:
    """Everything a named concept's page shows."""

    path: str
    name: str
    kind: str  # 'classes' or 'prompt'
    prompt: str
    members: list[tuple[str, int, str | None]]  # (class name, class id, its class page in this atlas or None)
    run_id: int | None = None
    target: str = ""
    images: int = 0
    seeds: str = ""
    salient: list[NamedToken] = field(default_factory=list)
    baseline: list[NamedToken] = field(default_factory=list)
    overlap: int | None = None
    not_indexed: str = ""  # why there is no T* (the command that makes it)
    localization: list[str] = field(default_factory=list)  # lines: ground truth and precision of each ranking
    audits: list[AuditNote] = field(default_factory=list)


def _localization_lines(site: Site, concept: ConceptInfo) -> list[str]:
    ev = site.evaluations.get("localization")
    if ev is None:
        return []
    truth = (ev.result.get("ground_truth") or {}).get(concept.name)
    if truth is None:
        return []
    ns = ev.result.get("ns") or [5]
    probe = str(ns[1] if len(ns) > 1 else ns[0])
    lines = [f"localization evaluation #{ev.id} ({ev.created_at}): ground truth {truth}; precision@{probe} of each ranking:"]
    for method, scores in sorted((ev.result.get("methods") or {}).items()):
        value = (scores.get("per_class_precision") or {}).get(concept.name)
        if value is not None:
            lines.append(f"{method}: {value:.3f}")
    return lines


def stored_audits(site: Site) -> list[tuple[Any, dict[str, Any]]]:
    """(evaluation row, its result) of every stored audit of the model, newest first: read once per build."""
    rows = [r for r in evaluation_store.model_evaluations(site.store, site.model.id) if r.kind == "audit"]
    return [(r, json.loads(r.result or "{}")) for r in reversed(rows)]


def _audits(site: Site, concept: ConceptInfo, audits: list[tuple[Any, dict[str, Any]]]) -> list[AuditNote]:
    notes = []
    for r, result in audits:
        groups = result.get("groups") or []
        if concept.name not in {result.get("neutral"), *(g.get("name") for g in groups)}:
            continue
        plot = site.thumbs.copy_file(r.plot_path) if r.plot_path else None
        notes.append(AuditNote(r.id, r.created_at.isoformat(timespec="seconds"), str(result.get("neutral")), int(result.get("images", 0)),
                               groups, result.get("cliff_delta"), result.get("cliff_delta_ci"), plot))
    return notes


def named_concept_page(site: Site, concept: ConceptInfo, audits: list[tuple[Any, dict[str, Any]]] | None = None) -> NamedConceptPage:
    """A named concept's page: its members, its T* beside the frequency baseline (from its own run), what evaluations say.

    `audits`: `stored_audits(site)`, read once for all the pages of a build (None: read here).
    """
    s, run = site.settings, site.run
    members = [(c.name, c.class_id, site.selected.get(c.class_id)) for c in concept.members]
    page = NamedConceptPage(named_path(concept), concept.name, concept.kind, concept.prompt, members,
                            localization=_localization_lines(site, concept),
                            audits=_audits(site, concept, stored_audits(site) if audits is None else audits))
    try:
        own = pick_run(site.store, site.model, concept, extractor=run.extractor, method=run.method)
        found = top_tokens(site.store, site.model, concept, k=s.top_k, baseline="frequency", run=own.id, split=s.split)
    except CortexError as exc:
        page.not_indexed = str(exc)
        return page
    base = {b.token for b in found.baseline or []}
    ours = {r.token for r in found.rows}
    page.run_id, page.target, page.images, page.seeds = found.run_id, found.target, found.images_indexed, found.image_seeds
    page.salient = [NamedToken(r.rank, r.token, r.count, r.n_images, site.tile(r.token), r.token in base) for r in found.rows]
    page.baseline = [NamedToken(b.rank, b.token, b.count, b.n_images, site.tile(b.token), b.token in ours) for b in found.baseline or []]
    page.overlap = found.overlap
    return page


__all__ = ["AuditNote", "NamedConceptPage", "NamedToken", "named_concept_page", "named_path", "stored_audits"]
