"""`cortex atlas`: the saliency index as a static website, built one concept and one token at a time.

Flow: pick the run and its classes -> one page per concept (T*_concept beside the baselines, crops,
Figure-2 overlays, evaluations, edits, searches) -> one page per token those pages list, plus the
most cross-class tokens (classes where it is salient vs merely frequent, crops, neighbours) -> one
page per named concept (`named.py`: members, T* of its own run, localisation, audits) -> the
evaluations page (`evaluations.py`: can the explanations be trusted, every stored run's tables) -> the
index page (filter box over a JSON manifest, parameters and provenance) -> pictures decoded in
batches on the device -> `atlas.json`.

Incremental: `atlas.json` keeps, per page, the hash of its HTML and of its inputs. A concept page
whose inputs did not change (its images in the run, its edits and searches, the run, the settings,
the stored evaluations, the decoder) is not even queried; a token page is recomputed only when a
class that uses the token changed, and a page is rewritten only when its HTML changed. Pictures are
named by content, so an unchanged page needs no decoding.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from ..core.version import __version__
from ..models import registry as model_registry
from ..core.errors import CortexError
from ..core.results import Result
from ..evaluation.common import MASKING_KINDS, PAPER_FILL, latest_variants
from ..core.progress import Progress, report
from ..index.rankings import BASELINES, RunInfo, pick_run
from ..models.registry import ClassInfo, ModelInfo
from ..core.environment import writable_dir
from ..store import atlas as atlas_store
from ..store import extractors as extractor_store
from ..store.database import Store
from ..models import subjects
from ..models.concepts import ConceptInfo, list_concepts
from .evaluations import PATH as EVALUATIONS, anchor_of, evaluations_page
from .html import CSS, STYLESHEET, render_concept, render_evaluations, render_index, render_named_concept, render_token
from .named import named_concept_page, stored_audits
from .pages import ConceptSummary, PageSettings, Site, concept_page, concept_path, summary_of, token_page, token_path
from .thumbnails import THUMB_DIR, Thumbnails, decoder_identity

ATLAS_FORMAT = 1  # the manifest's layout
# what draws the pages: a new version of this package recomputes every page (and redraws changed pictures)
CODE_KEY = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(Path(__file__).parent.glob("*.py")))).hexdigest()
MANIFEST = "atlas.json"
INDEX = "index.html"
TOKEN_CHUNK = 64  # token pages whose neighbours are computed together (a 64 x K distance matrix)
_PICTURE_NAME = re.compile(r"^[0-9a-f]{24}\.[a-z]+$")


@dataclass(frozen=True)
class AtlasResult(Result):
    """What `build_atlas` wrote."""

    model: str
    extractor: str
    run_id: int
    split: str
    out: str
    index: str  # the index page's path
    concepts: int
    tokens: int  # token pages
    written: list[str]  # site paths (re)written by this build: pages and the stylesheet
    unchanged: int  # pages (and the stylesheet) already up to date
    removed: list[str] = field(default_factory=list)  # pages of an earlier build no longer in the atlas
    pictures_written: int = 0
    pictures_removed: int = 0
    grids_decoded: int = 0
    seconds: float = 0.0
    named_concepts: int = 0  # pages of named concepts (`cortex concepts add`)


def _hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _check(settings: PageSettings, batch_size: int) -> None:
    if settings.top_k < 1:
        raise CortexError(f"-k must be >= 1, got {settings.top_k}")
    if settings.crops < 0:
        raise CortexError(f"--crops must be >= 0, got {settings.crops}")
    if settings.neighbours < 0:
        raise CortexError(f"--neighbours must be >= 0, got {settings.neighbours}")
    if batch_size < 1:
        raise CortexError(f"--batch-size must be >= 1, got {batch_size}")
    unknown = [b for b in settings.baselines if b not in BASELINES]
    if unknown:
        raise CortexError(f"--baseline must be among {', '.join(BASELINES)}, got {unknown[0]!r}")


def _out_dir(out: str | Path) -> Path:
    path = Path(out).expanduser()
    if path.is_dir() and any(path.iterdir()) and not (path / MANIFEST).is_file():
        raise CortexError(f"{str(path)!r} is not empty and holds no cortex atlas ({MANIFEST}); give a new or empty --out directory")
    return writable_dir(path, "the atlas to")


def _read_manifest(out: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) and manifest.get("format") == ATLAS_FORMAT else {}


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _selected(store: Store, model: ModelInfo, run, split: str, classes: Sequence[ClassInfo] | None, indexed: dict[int, int]) -> list[ClassInfo]:
    if not indexed:
        raise CortexError(f"saliency run {run.id} ({run.extractor}) has no indexed {split} images; "
                          f"run `cortex index --class <class> --extractor {run.extractor} --split {split}` first")
    if classes is None:
        return [c for c in model_registry.classes(store, model) if c.pk in indexed]
    missing = [c for c in classes if c.pk not in indexed]
    if missing:
        c = missing[0]
        raise CortexError(f"class {c.name!r} has no indexed {split} images in run {run.id} ({run.extractor}); "
                          f"run `cortex index --class '{c.name}' --extractor {run.extractor} --split {split}` first")
    return sorted(classes, key=lambda c: c.class_id)


def nearest_neighbours(codebook: torch.Tensor, tokens: Sequence[int], n: int) -> dict[int, list[tuple[int, float]]]:
    """token -> its n nearest other codebook entries (Euclidean distance), nearest first (ties: smaller id)."""
    if not tokens or n < 1:
        return {int(t): [] for t in tokens}
    book = codebook.detach().double()  # float64: near-equal distances keep one order on every device
    sq = (book * book).sum(dim=1)
    idx = torch.as_tensor(list(tokens), device=book.device, dtype=torch.long)
    d2 = (sq[idx, None] + sq[None, :] - 2 * book[idx] @ book.T).clamp_min(0)
    d2[torch.arange(len(idx), device=book.device), idx] = float("inf")
    order = torch.argsort(d2, dim=1, stable=True)  # stable: ties go to the smaller token id
    count = min(n, book.shape[0] - 1)
    found = {}
    for row, token in enumerate(tokens):
        near = order[row, :count].tolist()
        found[int(token)] = [(int(t), float(d2[row, t].sqrt())) for t in near]
    return found


@dataclass
class _Output:
    """The site this build leaves: every page's manifest entry, the pages (re)written and those already up to date."""

    root: Path
    old_pages: dict[str, dict[str, Any]]  # the previous build's pages ({} with --force)
    thumbs: Thumbnails
    force: bool
    batch_size: int
    pages: dict[str, dict[str, Any]] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)
    unchanged: int = 0

    def emit(self, path: str, html: str, key: str, pictures: set[str]) -> None:
        """Record a page and write it unless the same HTML is already there; draw the queued pictures now and then."""
        digest = hashlib.sha256(html.encode()).hexdigest()
        before = self.old_pages.get(path, {})
        if self.force or before.get("hash") != digest or not (self.root / path).is_file():
            _write(self.root / path, html)
            self.written.append(path)
        else:
            self.unchanged += 1
        self.pages[path] = {"hash": digest, "key": key, "pictures": sorted(pictures)}
        if len(self.thumbs.pending) >= 8 * self.batch_size:
            self.thumbs.flush()

    def keep(self, path: str, entry: dict[str, Any]) -> None:
        """An up-to-date page of the previous build, kept as it is."""
        self.pages[path] = entry
        self.unchanged += 1

    @contextmanager
    def pictures(self) -> Iterator[set[str]]:
        """The names of the pictures a page requests while it is computed and drawn."""
        self.thumbs.seen = set()
        yield self.thumbs.seen
        self.thumbs.seen = None


@dataclass
class _Build:
    """What every part of one build reads: the site, its classes, the previous build, and the pages' chrome."""

    site: Site
    split: str
    selected: list[ClassInfo]
    indexed: dict[int, int]  # class row -> its indexed images in the run (the class's state)
    states: dict[str, int]  # class id -> its state, for every indexed class
    variants: dict[str, list[Any]]  # the stored evaluations: kind -> its runs, the paper's fill first
    old: dict[str, Any]  # the previous build's manifest ({} with --force)
    global_key: str
    crumbs: str
    footer: str
    out: _Output
    progress: Progress | None


def _start(store: Store, model: ModelInfo, out: str | Path, classes: Sequence[ClassInfo] | None, chosen: RunInfo,
           settings: PageSettings, device: torch.device | str, batch_size: int, force: bool,
           progress: Progress | None) -> tuple[_Build, dict[str, Any]]:
    """The build's site and inputs, and the previous build's manifest (also read with --force, to prune it)."""
    split = settings.split
    indexed = atlas_store.indexed_classes(store, chosen.id, split)
    selected = _selected(store, model, chosen, split, classes, indexed)
    root = _out_dir(out)
    previous = _read_manifest(root)
    old = {} if force else previous  # --force still prunes what the previous build left
    variants = latest_variants(store, model)  # the masking evaluations: the newest run of each fill, the paper's first
    evaluations = {kind: runs[0] for kind, runs in variants.items()}
    every = {c.class_id: c for c in model_registry.classes(store, model)}
    states = {str(c.class_id): indexed[c.pk] for c in every.values() if c.pk in indexed}
    identity = decoder_identity(model)
    thumbs = Thumbnails(root, model, lambda: model_registry.load_model(model, device), identity, context=settings.context,
                        batch_size=batch_size, device=device)
    site = Site(store, model, chosen, settings, thumbs, every, {c.class_id: concept_path(c) for c in selected}, evaluations)
    global_key = _hash(ATLAS_FORMAT, CODE_KEY, __version__, identity, asdict(chosen), asdict(settings),
                       [(c.class_id, c.name, list(c.synonyms)) for c in selected], sorted((k, e.id) for k, runs in variants.items() for e in runs))
    crumbs = f"{model.name} · run {chosen.id} ({chosen.extractor}, {getattr(chosen, 'method', 'smoothgrad')}) · {split} images"
    footer = f"cortex {__version__} · model {model.name} · saliency run {chosen.id} ({chosen.extractor}) · {split} split"
    output = _Output(root, old.get("pages", {}), thumbs, force, batch_size)
    return _Build(site, split, selected, indexed, states, variants, old, global_key, crumbs, footer, output, progress), previous


def _concept_pages(build: _Build) -> list[ConceptSummary]:
    """One page per concept; a page whose inputs did not change is kept without a query."""
    site, out = build.site, build.out
    activity = atlas_store.class_activity(site.store, site.model.id)
    old_concepts = build.old.get("concepts", {})
    summaries: list[ConceptSummary] = []
    everyone = sorted(build.states.items()) if "specific" in site.settings.baselines else []
    for i, cls in enumerate(build.selected):
        report(build.progress, i, len(build.selected), f"concept {cls.name}")
        path = concept_path(cls)
        key = _hash(build.global_key, cls.class_id, build.indexed[cls.pk], activity.get(cls.class_id), everyone)
        before = out.old_pages.get(path, {})
        kept = old_concepts.get(str(cls.class_id))
        if before.get("key") == key and kept is not None and (out.root / path).is_file():
            out.keep(path, before)
            summaries.append(ConceptSummary(**kept))
            continue
        with out.pictures() as seen:
            page = concept_page(site, cls)
            summaries.append(summary_of(page))
            out.emit(path, render_concept(page, f"{build.crumbs} · {cls.name}", build.footer, build.site.settings.image_pages), key, seen)
    return summaries


@dataclass(frozen=True)
class _Tokens:
    """The atlas's token pages: which tokens get one, the most cross-class tokens, and each page's manifest entry."""

    wanted: list[int]
    cross: list[Any]  # atlas_store.TokenSpread of the most cross-class tokens
    info: dict[str, dict[str, Any]]  # token -> the classes it is salient in (the index page's filter box)
    key: str  # the hash of `wanted`


def _affected_tokens(build: _Build, wanted: list[int], token_set: str) -> set[int]:
    """The wanted tokens whose pages may have changed since the previous build: those a changed class uses."""
    old, store, run = build.old, build.site.store, build.site.run
    if old.get("global_key") != build.global_key or old.get("token_set") != token_set:
        return set(wanted)
    every, indexed = build.site.classes, build.indexed
    changed = [pk for cid, pk in ((c.class_id, c.pk) for c in every.values() if c.pk in indexed)
               if old.get("states", {}).get(str(cid)) != indexed[pk]]
    gone = [c for c in old.get("states", {}) if int(c) not in every or every[int(c)].pk not in indexed]
    if gone:  # a class's rows were deleted: which tokens it used is no longer in the database
        return set(wanted)
    return atlas_store.tokens_of_classes(store, run.id, build.split, changed) if changed else set()


def _token_pages(build: _Build, summaries: list[ConceptSummary], device: torch.device | str) -> _Tokens:
    """One page per token the concept pages list, plus the most cross-class tokens; unchanged ones are kept."""
    site, out, settings = build.site, build.out, build.site.settings
    subset = None if len(build.selected) == len(build.indexed) else [c.pk for c in build.selected]
    spread = atlas_store.token_spread(site.store, site.run.id, build.split, subset)
    by_token = {s.token: s for s in spread}
    cross = [s for s in spread if s.salient_classes > 0][:settings.cross_class]
    listed_in: dict[int, list[tuple[str, str, int]]] = {}
    for summary in summaries:
        for rank, token in enumerate(summary.top, start=1):
            listed_in.setdefault(token, []).append((summary.name, summary.path, rank))
    wanted = sorted({t for s in summaries for t in s.top + s.baseline} | {s.token for s in cross})
    token_set = _hash(wanted)
    old_tokens = build.old.get("tokens", {})
    affected = _affected_tokens(build, wanted, token_set)
    todo = [t for t in wanted if t in affected or token_path(t) not in out.old_pages or str(t) not in old_tokens
            or not (out.root / token_path(t)).is_file()]
    token_info: dict[str, dict[str, Any]] = {}
    todo_set = set(todo)
    for t in wanted:
        if t not in todo_set:
            out.keep(token_path(t), out.old_pages[token_path(t)])
            token_info[str(t)] = old_tokens[str(t)]
    have_pages = set(wanted)
    codebook = model_registry.load_model(site.model, device).codebook if todo and settings.neighbours else None
    for begin in range(0, len(todo), TOKEN_CHUNK):
        chunk = todo[begin:begin + TOKEN_CHUNK]
        near = nearest_neighbours(codebook, chunk, settings.neighbours)
        for j, token in enumerate(chunk):
            report(build.progress, begin + j, len(todo), f"token {token}")
            with out.pictures() as seen:
                page = token_page(site, token, by_token.get(token), near[token], have_pages, listed_in.get(token, []))
                token_info[str(token)] = {"classes": [u.name for u in page.salient[:5]], "salient_classes": page.salient_classes}
                out.emit(page.path, render_token(page, site.model.grid, f"{build.crumbs} · token {token}", build.footer), "", seen)
    return _Tokens(wanted, cross, token_info, token_set)


def _named_pages(build: _Build, named: Sequence[ConceptInfo] | None, have_pages: set[int]) -> list[Any]:
    """One page per named concept (always recomputed: a few queries each; written only when their HTML changed)."""
    pages = []
    audits = stored_audits(build.site)
    for concept in list_concepts(build.site.store, build.site.model) if named is None else named:
        with build.out.pictures() as seen:
            page = named_concept_page(build.site, concept, audits)
            pages.append(page)
            build.out.emit(page.path, render_named_concept(page, have_pages, f"{build.crumbs} · {concept.name}", build.footer), "", seen)
    return pages


def _evaluations_page(build: _Build) -> None:
    """The evaluations page, if any evaluation is stored (always recomputed; written only when its HTML changed)."""
    if not build.variants:
        return
    name = build.site.model.name
    with build.out.pictures() as seen:
        page = evaluations_page(name, build.variants, build.site.thumbs.copy_file)
        build.out.emit(EVALUATIONS, render_evaluations(page, name, f"{build.crumbs} · evaluations", build.footer), "", seen)


def _evaluation_cards(build: _Build) -> list[dict[str, Any]]:
    """The index page's card of every stored evaluation run (its plot copied into the site)."""
    cards = []
    for kind, runs in sorted(build.variants.items()):
        for ev in runs:
            fill = str(ev.params.get("fill", PAPER_FILL)) if kind in MASKING_KINDS else PAPER_FILL
            plot = build.site.thumbs.copy_file(ev.plot_path) if ev.plot_path else None
            cards.append({"kind": kind if fill == PAPER_FILL else f"{kind} ({fill} fill)", "id": ev.id, "created_at": ev.created_at,
                          "plot": plot, "page": f"{EVALUATIONS}#{anchor_of(kind, fill)}"})
    return cards


def _index_page(build: _Build, summaries: list[ConceptSummary], tokens: _Tokens, named_pages: list[Any]) -> None:
    """The index page (a filter box over every concept and token, the parameters and provenance) and the stylesheet."""
    site, run = build.site, build.site.run
    with build.out.pictures() as seen:
        swatches = {t: site.tile(t) for t in sorted({t for s in summaries for t in s.top[:6]} | {s.token for s in tokens.cross})}
        eval_cards = _evaluation_cards(build)
        images = sum(s.images for s in summaries)
        search = {
            "concepts": [{"class_id": s.class_id, "name": s.name, "synonyms": s.synonyms, "path": s.path, "tokens": s.top} for s in summaries],
            "tokens": [{"token": t, "path": token_path(t), **tokens.info[str(t)]} for t in tokens.wanted],
        }
        index_html = render_index(
            f"cortex atlas: {site.model.name}",
            f"{len(summaries)} concepts, {len(tokens.wanted)} token pages, {images} indexed {build.split} images; saliency run {run.id} ({run.extractor})",
            summaries, [asdict(s) for s in tokens.cross], swatches, eval_cards,
            _provenance(site.store, site.model, run, site.settings, summaries, images), search, build.footer, named_pages,
        )
        build.out.emit(INDEX, index_html, "", seen)
    build.out.emit(STYLESHEET, CSS, "", set())
    site.thumbs.flush()


def _prune(root: Path, previous: dict[str, Any], pages: dict[str, dict[str, Any]]) -> tuple[list[str], int]:
    """Delete the pages and pictures an earlier build left that this one no longer has: (pages removed, pictures removed)."""
    removed = []
    for path in sorted(set(previous.get("pages", {})) - set(pages)):
        if (path.startswith(("concepts/", "tokens/", "named/")) and path.endswith(".html")) or path == EVALUATIONS:
            (root / path).unlink(missing_ok=True)
            removed.append(path)
    referenced = {Path(p).name for entry in pages.values() for p in entry.get("pictures", [])}
    pictures_removed = 0
    if (root / THUMB_DIR).is_dir():
        for file in (root / THUMB_DIR).iterdir():
            if _PICTURE_NAME.match(file.name) and file.name not in referenced:
                file.unlink()
                pictures_removed += 1
    return removed, pictures_removed


def _write_manifest(build: _Build, summaries: list[ConceptSummary], tokens: _Tokens) -> None:
    """`atlas.json`: what the next build compares with (written only when it changed, or with --force)."""
    model, run, root = build.site.model, build.site.run, build.out.root
    manifest = {
        "format": ATLAS_FORMAT, "generator": f"cortex {__version__}", "model": model.name, "run": run.id,
        "extractor": run.extractor, "split": build.split, "global_key": build.global_key, "token_set": tokens.key, "states": build.states,
        "pages": build.out.pages, "concepts": {str(s.class_id): asdict(s) for s in summaries}, "tokens": tokens.info,
    }
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    if build.out.force or not (root / MANIFEST).is_file() or (root / MANIFEST).read_text() != text:
        _write(root / MANIFEST, text)


def build_atlas(
    store: Store,
    model: ModelInfo,
    out: str | Path,
    *,
    classes: Sequence[ClassInfo] | None = None,
    extractor: str | None = None,
    method: str | None = None,
    run: int | None = None,
    settings: PageSettings = PageSettings(),
    device: torch.device | str = "cpu",
    batch_size: int = 32,
    force: bool = False,
    progress: Progress | None = None,
    named: Sequence[ConceptInfo] | None = None,
) -> AtlasResult:
    """Write (or bring up to date) the static token atlas of one saliency run.

    Args:
        store: the open database (read only).
        model: the model whose index is shown.
        out: the site directory (created; must be new, empty, or an earlier atlas).
        classes: the concepts to give pages (default: every class the run has indexed images of).
        extractor: read the newest run of this extractor (default: the newest run of any).
        method: read the newest run of this attribution method (default: of any).
        run: read this saliency run id instead.
        settings: how much each page shows (top-k, crops, baselines, split, ...).
        device: where pictures are decoded and codebook distances computed.
        batch_size: token grids decoded per batch.
        force: recompute and rewrite every page, ignoring the previous build.
        progress: called as progress(done, total, info) per page.
        named: the named concepts to give pages (`atlas/named.py`; default: every concept of the model).

    Returns:
        AtlasResult: which pages were written, which were already up to date, what was removed.

    Raises:
        CortexError: nothing indexed yet, a class without indexed images, bad settings, or an --out
            directory that holds something other than an atlas.
    """
    start = time.perf_counter()
    _check(settings, batch_size)
    chosen = pick_run(store, model, None, extractor=extractor, run=run, method=method)
    build, previous = _start(store, model, out, classes, chosen, settings, device, batch_size, force, progress)
    summaries = _concept_pages(build)
    tokens = _token_pages(build, summaries, device)
    named_pages = _named_pages(build, named, set(tokens.wanted))
    _evaluations_page(build)
    _index_page(build, summaries, tokens, named_pages)
    removed, pictures_removed = _prune(build.out.root, previous, build.out.pages)
    _write_manifest(build, summaries, tokens)
    report(progress, 1, 1, "done")
    thumbs = build.site.thumbs
    return AtlasResult(
        model.name, chosen.extractor, chosen.id, build.split, str(build.out.root), str(build.out.root / INDEX), len(summaries), len(tokens.wanted),
        build.out.written, build.out.unchanged, removed, thumbs.written, pictures_removed, thumbs.decoded, round(time.perf_counter() - start, 3),
        len(named_pages),
    )


def atlas_of(store: Store, model: ModelInfo, out: str | Path, *, classes: subjects.Names | None = None, k: int | None = None,
             crops: int | None = None, neighbours: int | None = None, baselines: Sequence[str] | None = None, split: str = "train",
             image_pages: bool = False, **build: Any) -> AtlasResult:
    """`build_atlas` as `cortex atlas` asks for it: `PageSettings` with the options given (None: its default), and the pages
    of what `classes` names (`subjects.subjects`; None or 'all': every indexed class and every named concept; a named
    concept brings its own page and its members' class pages). `build`: the rest of `build_atlas`'s keywords (extractor,
    method, run, device, batch_size, force, progress).
    """
    defaults = PageSettings()
    settings = PageSettings(top_k=defaults.top_k if k is None else k, crops=defaults.crops if crops is None else crops,
                            baselines=defaults.baselines if baselines is None else tuple(baselines), split=split,
                            neighbours=defaults.neighbours if neighbours is None else neighbours, image_pages=image_pages)
    chosen = named = None
    if classes is not None and not (isinstance(classes, str) and classes.strip().lower() == "all"):
        items = subjects.subjects(store, model, classes)
        named = [t.concept for t in items if not t.is_class]
        chosen = subjects.member_classes(items)
    return build_atlas(store, model, out, classes=chosen, settings=settings, named=named, **build)


def _size(path: str) -> str:
    try:
        return f" ({os.path.getsize(path) / 1e6:.1f} MB)"
    except OSError:
        return ""


def _method(run) -> str:
    """The run's attribution method and the parameters it uses."""
    method = getattr(run, "method", "smoothgrad")
    if method == "smoothgrad":
        return f"SmoothGrad N={run.samples}, alpha={run.alpha:g}"
    steps, baseline = getattr(run, "steps", 0), getattr(run, "baseline", "none")
    return method + (f" ({steps} steps)" if steps else "") + (f", baseline {baseline}" if baseline and baseline != "none" else "")


def _provenance(store: Store, model: ModelInfo, run, settings: PageSettings, summaries: list[ConceptSummary], images: int) -> list[tuple[str, str]]:
    ext = next((e for e in extractor_store.model_extractors(store, model.id) if e.id == run.extractor_id), None)
    window = min(2 * settings.context + 1, model.grid)
    return [
        ("model", f"{model.name}: codebook K={model.n_embed} × d={model.embed_dim}, {model.grid}×{model.grid} tokens, "
                  f"{model.image_size}×{model.image_size} px"),
        ("model files", f"{Path(model.config_path).name} · {Path(model.ckpt_path).name}{_size(model.ckpt_path)}"),
        ("extractor", f"{run.extractor}" + (f" ({ext.arch}), checkpoint sha256 {ext.ckpt_sha256[:16]}" if ext else "")),
        ("saliency run", f"#{run.id}: {_method(run)}, top-n={run.top_n}, reduce {run.reduce}, {run.precision}, seed {run.seed}"),
        ("images", f"{images} indexed {settings.split} images of {len(summaries)} classes"),
        ("atlas", f"top-k {settings.top_k}, {settings.crops} crops per token, baselines: {', '.join(settings.baselines) or 'none'}, "
                  f"crops of {window}×{window} tokens"),
        ("built by", f"cortex {__version__}: cortex atlas --model {model.name} --run {run.id} -k {settings.top_k} --out DIR"),
    ]


__all__ = ["AtlasResult", "PageSettings", "atlas_of", "build_atlas", "nearest_neighbours"]
