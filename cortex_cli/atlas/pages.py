"""What each atlas page shows, gathered from the index one concept or one token at a time.

The counts come from the same functions as `cortex top-tokens` and `cortex token` (`rankings.py`);
the rest (strongest occurrences, top positions, edits, searches) from `store/atlas.py`. Pictures are
only named here (`Thumbnails.request`); they are drawn later, in batches.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.errors import CortexError
from ..index.rankings import RunInfo, run_images, token_usage, top_tokens
from ..search.regions import parse_region
from ..models.registry import ClassInfo, ModelInfo
from ..store import atlas as atlas_store
from ..store import images as image_store
from ..store.database import Store
from .thumbnails import Picture, Thumbnails, token_tile

CROP_SIDE = 72  # pixels a side of a patch crop (nearest upscale)
FIGURE_SIDE = 192  # Figure-2 overlays
CARD_SIDE = 128  # edits and optimised grids


@dataclass(frozen=True)
class PageSettings:
    """How much each page shows (the CLI sets top_k, crops and baselines; the rest are defaults)."""

    top_k: int = 20  # salient tokens per concept page, and baseline tokens beside them
    crops: int = 8  # patch crops per salient token
    baselines: tuple[str, ...] = ("frequency",)  # extractor-free rankings beside T*_concept ('frequency', 'specific')
    split: str = "train"
    overlays: int = 4  # images drawn Figure-2 style on a concept page
    overlay_boxes: int = 5  # boxes per overlay (the image's most salient positions)
    context: int = 2  # tokens around a crop's cell on each side (2: a 5 x 5 window)
    token_classes: int = 10  # classes listed in each view of a token page
    context_classes: int = 6  # classes whose strongest occurrences a token page shows
    context_crops: int = 4  # crops per such class
    neighbours: int = 8  # nearest codebook entries on a token page
    cross_class: int = 24  # most cross-class tokens on the index page
    edits: int = 12  # newest edits shown per concept
    image_pages: bool = False  # overlays link to images/<id>.html (`cortex serve` renders those pages live)


def concept_path(cls: ClassInfo) -> str:
    """The concept page's path in the site: concepts/<class id>-<slug>.html."""
    slug = re.sub(r"[^a-z0-9]+", "-", cls.name.lower()).strip("-")[:48] or "class"
    return f"concepts/{cls.class_id}-{slug}.html"


def token_path(token: int) -> str:
    return f"tokens/{int(token)}.html"


@dataclass
class Crop:
    """A patch crop: one image's strongest occurrence of a token."""

    image_id: int
    class_id: int
    class_name: str
    position: int  # row * m + col
    tsv: float
    rank: int  # 1 = the image's most salient position
    src: str


@dataclass
class SalientToken:
    """One token of T*_concept with its crops."""

    rank: int
    token: int
    count: int  # occurrences in the per-image top-n sets
    n_images: int
    mean_tsv: float
    swatch: str
    in_baselines: list[str]  # baseline kinds whose top-k also hold it
    crops: list[Crop]


@dataclass
class BaselineToken:
    rank: int
    token: int
    count: int
    n_images: int
    score: float | None  # 'specific': smoothed P(class | token)
    swatch: str
    salient: bool  # also in T*_concept


@dataclass
class Baseline:
    """One extractor-free ranking over the concept's same images."""

    kind: str
    rows: list[BaselineToken] = field(default_factory=list)
    overlap: int | None = None
    jaccard: float | None = None
    contrast: str = ""  # 'specific': which images it compares against
    unavailable: str = ""  # why it could not be computed


@dataclass
class Overlay:
    """An image with boxes on its most salient positions (paper Figure 2)."""

    image_id: int
    seed: int
    positions: list[int]
    src: str


@dataclass
class EvaluationNote:
    """What one stored evaluation says about this concept."""

    kind: str
    evaluation_id: int
    created_at: str
    lines: list[str]
    tokens: dict[str, list[int]] = field(default_factory=dict)  # method -> tokens it selected for this concept
    plot: str | None = None


@dataclass
class EditCard:
    id: int
    source: str
    target: str
    method: str
    region: str
    extractor: str
    changed: int  # tokens the edit changed
    scores: list[str]  # 'judge:resnet P(target) 0.63 -> 0.97'
    before: str
    after: str


@dataclass
class SearchCard:
    id: int
    region: str
    init: str
    restart: int
    restarts: int
    extractor: str
    objective: float
    p_target: float
    judges: dict[str, float]
    t_star: list[tuple[int, int]]  # (token, positions), most positions first
    src: str


@dataclass
class ConceptPage:
    path: str
    class_id: int
    name: str
    synonyms: list[str]
    split: str
    images: int  # indexed images counted
    seeds: str
    top_n: int  # tokens the run stored per image
    salient: list[SalientToken]
    baselines: list[Baseline]
    overlays: list[Overlay]
    evaluations: list[EvaluationNote]
    edits: list[EditCard]
    searches: list[SearchCard]


@dataclass
class ConceptSummary:
    """A concept as the index page and the token pages see it (kept in the manifest between builds)."""

    class_id: int
    name: str
    synonyms: list[str]
    path: str
    images: int
    top: list[int]  # T*_concept, most frequent first
    baseline: list[int]  # the first baseline's tokens
    overlap: int | None


@dataclass
class ClassUse:
    class_rank: int
    class_id: int
    name: str
    count: int
    n_images: int
    token_rank: int
    path: str | None  # the class's concept page, if the atlas has one
    salient: bool  # in the salient view too (for the occurrence view: 'frequent but never salient' when False)


@dataclass
class ContextRow:
    class_id: int
    name: str
    path: str | None
    crops: list[Crop]


@dataclass
class Neighbour:
    token: int
    distance: float
    swatch: str
    path: str | None


@dataclass
class TokenPage:
    """A token's page. Only per-token figures: a page that no changed class touches stays valid as it is."""

    path: str
    token: int
    swatch: str
    salient_classes: int  # among the atlas's classes
    occurrence_classes: int
    salient_count: int
    salient_images: int
    salient: list[ClassUse]
    occurrence: list[ClassUse]
    context: list[ContextRow]
    neighbours: list[Neighbour]
    concepts: list[tuple[str, str, int]]  # (concept, its page, the token's rank in its T*_concept)


@dataclass
class Site:
    """What every page shares: the model, the run, the atlas's classes and token pages."""

    store: Store
    model: ModelInfo
    run: RunInfo
    settings: PageSettings
    thumbs: Thumbnails
    classes: dict[int, ClassInfo]  # class id -> every class of the model
    selected: dict[int, str]  # class id -> concept page, for the atlas's classes
    evaluations: dict[str, Any] = field(default_factory=dict)  # kind -> evaluation.common.StoredEvaluation

    def tile(self, token: int) -> str:
        return self.thumbs.request(Picture(token_tile(token, self.model), "image"))


def _crop(site: Site, occurrence: atlas_store.Occurrence, blob: bytes, class_id: int, class_name: str) -> Crop:
    src = site.thumbs.request(Picture(blob, "crop", (occurrence.position,), side=CROP_SIDE))
    return Crop(occurrence.image_id, class_id, class_name, occurrence.position, round(occurrence.tsv, 8), occurrence.rank + 1, src)


def concept_page(site: Site, cls: ClassInfo) -> ConceptPage:
    """Everything the concept's page shows (the counts are `cortex top-tokens`'s)."""
    s, store, model, run = site.settings, site.store, site.model, site.run
    results: dict[str, Any] = {}
    for kind in s.baselines:
        try:
            results[kind] = top_tokens(store, model, cls, k=s.top_k, baseline=kind, run=run.id, split=s.split)
        except CortexError as exc:
            if kind != "specific":
                raise
            results[kind] = exc  # it needs the same seeds of every class: say so on the page
    first = next((r for r in results.values() if not isinstance(r, CortexError)), None)
    if first is None:
        first = top_tokens(store, model, cls, k=s.top_k, run=run.id, split=s.split)
    baseline_sets = {kind: {b.token for b in (r.baseline or [])} for kind, r in results.items() if not isinstance(r, CortexError)}
    occurrences = {row.token: atlas_store.strongest_occurrences(store, run.id, s.split, row.token, s.crops, class_pk=cls.pk)
                   for row in first.rows}
    image_set = run_images(store, run, cls, s.split)
    overlay_ids = list(image_set.ids[:s.overlays])
    wanted = {o.image_id for found in occurrences.values() for o in found} | set(overlay_ids)
    blobs = image_store.token_blobs(store, model.id, sorted(wanted))
    salient = [
        SalientToken(row.rank, row.token, row.count, row.n_images, round(row.mean_tsv, 8), site.tile(row.token),
                     [k for k, toks in baseline_sets.items() if row.token in toks],
                     [_crop(site, o, blobs[o.image_id], cls.class_id, cls.name) for o in occurrences[row.token]])
        for row in first.rows
    ]
    ours = {row.token for row in first.rows}
    baselines = []
    for kind, result in results.items():
        if isinstance(result, CortexError):
            baselines.append(Baseline(kind, unavailable=str(result)))
            continue
        contrast = (f"against the same seeds of all {result.contrast_classes} classes ({result.contrast_images} images)"
                    if result.contrast_classes else "")
        rows = [BaselineToken(b.rank, b.token, b.count, b.n_images, b.score, site.tile(b.token), b.token in ours) for b in result.baseline or []]
        baselines.append(Baseline(kind, rows, result.overlap, round(result.jaccard or 0.0, 6), contrast))
    boxes = atlas_store.top_positions(store, run.id, overlay_ids, s.overlay_boxes)
    seeds = dict(zip(image_set.ids, image_set.seeds))
    overlays = [
        Overlay(i, seeds[i], boxes[i], site.thumbs.request(Picture(blobs[i], "boxes", tuple(boxes[i]), side=FIGURE_SIDE)))
        for i in overlay_ids
    ]
    return ConceptPage(
        concept_path(cls), cls.class_id, cls.name, list(cls.synonyms), s.split, first.images_indexed, first.image_seeds, run.top_n,
        salient, baselines, overlays, _evaluation_notes(site, cls), _edits(site, cls), _searches(site, cls),
    )


def summary_of(page: ConceptPage) -> ConceptSummary:
    first = next((b for b in page.baselines if not b.unavailable), None)
    return ConceptSummary(page.class_id, page.name, page.synonyms, page.path, page.images, [t.token for t in page.salient],
                          [b.token for b in first.rows] if first else [], first.overlap if first else None)


def _evaluation_notes(site: Site, cls: ClassInfo) -> list[EvaluationNote]:
    """The stored evaluations' per-concept figures (localisation precision, concept-level tokens, edit sources)."""
    notes = []
    for kind in ("localization", "concept-level", "edit"):
        ev = site.evaluations.get(kind)
        if ev is None:
            continue
        try:
            lines, tokens = _evaluation_lines(kind, ev.result, cls)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            continue  # an older result format: show nothing rather than guess
        if not lines and not tokens:
            continue
        plot = site.thumbs.copy_file(ev.plot_path) if ev.plot_path else None
        notes.append(EvaluationNote(kind, ev.id, ev.created_at, lines, tokens, plot))
    return notes


def _evaluation_lines(kind: str, result: dict[str, Any], cls: ClassInfo) -> tuple[list[str], dict[str, list[int]]]:
    if kind == "localization":
        ns = result.get("ns") or [5]
        n = ns[1] if len(ns) > 1 else ns[0]
        parts = [f"{method} {float(m['per_class_precision'][cls.name]):.2f}" for method, m in result["methods"].items()
                 if cls.name in m.get("per_class_precision", {})]
        if not parts:
            return [], {}
        return [f"ground truth: precision@{n} of the selected tokens on the object ({result.get('n_images', '?')} world images "
                f"of all concepts): " + ", ".join(parts)], {}
    if kind == "concept-level":
        tokens = {method: [int(t) for t in per_class[cls.name]] for method, per_class in result["concept_tokens"].items()
                  if cls.name in per_class}
        if not tokens:
            return [], {}
        return [f"masking T*_concept (k={result.get('k', '?')}) drops the judges' accuracy over all concepts; the tokens it masked "
                "for this concept:"], tokens
    items = [it for it in result["items"] if cls.class_id in (it.get("source"), it.get("target"))]
    if not items:
        return [], {}
    sources = sum(1 for it in items if it.get("source") == cls.class_id)
    return [f"edit evaluation ({result.get('steps', '?')} steps): of its {len(result['items'])} source images, {sources} show this "
            f"concept and {len(items) - sources} are edited toward it"], {}


def _region_box(text: str, grid: int) -> tuple[int, int, int, int] | None:
    try:
        region = parse_region(text, grid)
    except CortexError:
        return None
    if region.rows == (0, grid) and region.cols == (0, grid):
        return None
    return (region.rows[0], region.rows[1], region.cols[0], region.cols[1])


def _edits(site: Site, cls: ClassInfo) -> list[EditCard]:
    model = site.model
    names = {cid: c.name for cid, c in site.classes.items()}
    cards = []
    dtype = "<u2" if model.n_embed <= 65536 else "<i4"
    for e in atlas_store.class_edits(site.store, model.id, cls.class_id, site.settings.edits):
        box = _region_box(e.region, model.grid)
        changed = int((np.frombuffer(e.source_tokens, dtype=dtype) != np.frombuffer(e.result_tokens, dtype=dtype)).sum())
        try:
            probs = json.loads(e.probabilities or "[]")
        except ValueError:
            probs = []
        scores = [f"{p['scorer']} P(target) {p['target_before']:.2f} → {p['target_after']:.2f}" for p in probs
                  if isinstance(p, dict) and p.get("target_before") is not None and p.get("target_after") is not None]
        cards.append(EditCard(
            e.id, names.get(e.source_class, "?") if e.source_class is not None else "?", names.get(e.target_class, str(e.target_class)),
            e.method, e.region, e.extractor or "?", changed, scores,
            site.thumbs.request(Picture(e.source_tokens, "image", region=box, side=CARD_SIDE)),
            site.thumbs.request(Picture(e.result_tokens, "image", region=box, side=CARD_SIDE)),
        ))
    return cards


def _searches(site: Site, cls: ClassInfo) -> list[SearchCard]:
    """The best restart (highest extractor objective) of each stored concept search of the class."""
    by_key: dict[str, list[atlas_store.SearchRecord]] = {}
    for r in atlas_store.class_searches(site.store, site.model.id, cls.pk):
        by_key.setdefault(r.search_key, []).append(r)
    cards = []
    for restarts in by_key.values():
        best = max(restarts, key=lambda r: (r.objective, -r.restart))
        try:
            t_star = [(int(t), int(n)) for t, n in json.loads(best.t_star or "[]")][:10]
            judges = {str(k): round(float(v), 6) for k, v in json.loads(best.judges or "{}").items()}
        except (ValueError, TypeError):
            t_star, judges = [], {}
        src = site.thumbs.request(Picture(best.tokens, "image", region=_region_box(best.region, site.model.grid), side=CARD_SIDE))
        cards.append(SearchCard(best.id, best.region, best.init, best.restart, len(restarts), best.extractor or "?",
                                round(best.objective, 6), round(best.p_target, 6), judges, t_star, src))
    return sorted(cards, key=lambda c: c.id)


def token_page(
    site: Site, token: int, spread: atlas_store.TokenSpread | None, neighbours: list[tuple[int, float]], pages: set[int],
    listed_in: list[tuple[str, str, int]],
) -> TokenPage:
    """Everything a token's page shows (the class lists are `cortex token`'s)."""
    s, store, model, run = site.settings, site.store, site.model, site.run
    usage = token_usage(store, model, token, top=s.token_classes, run=run.id, split=s.split)
    salient_ids = {u.class_id for u in usage.salient}

    def uses(rows, salient_view: bool) -> list[ClassUse]:
        return [ClassUse(u.class_rank, u.class_id, u.class_name, u.count, u.n_images, u.token_rank, site.selected.get(u.class_id),
                         salient_view or u.class_id in salient_ids) for u in rows]

    context = []
    for u in usage.salient[:s.context_classes]:
        cls = site.classes[u.class_id]
        found = atlas_store.strongest_occurrences(store, run.id, s.split, token, s.context_crops, class_pk=cls.pk)
        blobs = image_store.token_blobs(store, model.id, [o.image_id for o in found])
        context.append(ContextRow(cls.class_id, cls.name, site.selected.get(cls.class_id),
                                  [_crop(site, o, blobs[o.image_id], cls.class_id, cls.name) for o in found]))
    near = [Neighbour(t, round(d, 5), site.tile(t), token_path(t) if t in pages else None) for t, d in neighbours]
    return TokenPage(
        token_path(token), token, site.tile(token),
        spread.salient_classes if spread else 0, spread.occurrence_classes if spread else 0,
        spread.salient if spread else 0, spread.salient_images if spread else 0,
        uses(usage.salient, True), uses(usage.occurrence, False), context, near, listed_in,
    )


__all__ = [
    "ConceptPage", "ConceptSummary", "PageSettings", "Site", "TokenPage", "concept_page", "concept_path", "summary_of", "token_page",
    "token_path",
]
