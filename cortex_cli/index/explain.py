"""One image's saliency, drawn: `cortex show` (from the index) and `cortex explain` (computed, not stored).

Reads the index when it can (a stored image already indexed), otherwise computes the TSV map on
the fly with the run's settings; never writes to the index.

What is explained: by default a class's logit (the PNG's or stored image's class, else the one the
extractor predicts); with `target`, a given class's logit or a named concept's score
(`subjects.index_target`: its union score `score` read off a class extractor, or an extractor trained
for it), exactly as `cortex index` explains it, so a computed map equals an indexed one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..models import registry as model_registry, subjects
from ..backends.base import from_pil, to_pil
from ..core.errors import CortexError, NotFound
from ..core.results import Result
from ..extractors.registry import get_extractor, load_extractor
from ..images.figures import draw_token_boxes, image_grid
from ..images.generation import image_keys, image_tokens
from .build import unpack_tsv
from ..images.pngmeta import read_png, save_png
from .rankings import extractor_id, pick_run
from ..models.registry import ClassInfo, ModelInfo
from ..attribution import SaliencySettings, token_saliency, top_positions
from ..core.seeding import derive_seed, image_key
from ..store import index as index_store
from ..store import queries as query_store
from ..store.database import Store
from ..store.images import image_class_id
from ..models.subjects import Subject, SubjectLike
from ..models.targets import CLASS, DEFAULT_RULE, Target

FIGURE_SIDE = 256  # figures are upscaled (nearest) to at least this many pixels


@dataclass
class SalientToken:
    """One of an image's top tokens."""

    rank: int  # 1 = most salient
    position: int  # row * m + col
    row: int
    col: int
    token: int
    tsv: float


@dataclass(frozen=True)
class ExplainResult(Result):
    """The top-n tokens of one image and where its figure went."""

    model: str
    extractor: str
    source: str  # image id or PNG path
    class_id: int | None  # the explained class (None when a concept is explained)
    class_name: str  # the explained class's or concept's name
    target: str  # 'stored class', 'PNG metadata', 'predicted by the extractor', 'given class' or 'given concept'

    tokens_from: str  # 'store', 'PNG metadata' or 'VQGAN encoding'
    tsv_from: str  # 'index run N' or 'computed'
    top: list[SalientToken]
    out: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    concept: str | None = None  # the explained concept's name (None: a class's logit)
    target_key: str = CLASS  # the explained score: 'class' or a concept's target key (`targets.Target.key`)

    def table_rows(self) -> list[dict[str, Any]]:
        """One row per salient token: rank, position, token, TSV."""
        return [asdict(t) for t in self.top]

@dataclass(frozen=True)
class TokenFigureResult(Result):
    """`cortex show --class C --token T`: images of C (a class or a concept) where T is salient, boxed."""

    model: str
    class_id: int | None  # None for a concept
    class_name: str  # the class's or the concept's name
    token: int
    run_id: int
    images_with_token: int  # indexed images of the class (a concept: of its members) whose top-n contains the token
    image_ids: list[int]  # those drawn
    out: str
    concept: str | None = None  # the concept's name (None: a class)
    target_key: str = CLASS  # what the run read explains: 'class' or the concept's target key


def _scale(image_size: int) -> int:
    return max(1, -(-FIGURE_SIDE // image_size))


def _top(tsv: torch.Tensor, tokens: torch.Tensor, n: int) -> list[SalientToken]:
    m = tsv.shape[-1]
    flat = tokens.reshape(-1)
    return [SalientToken(i + 1, p, p // m, p % m, int(flat[p]), v) for i, (p, v) in enumerate(top_positions(tsv, n))]


def _settings_dict(settings: SaliencySettings) -> dict[str, Any]:
    return {k: v for k, v in settings.as_dict().items() if k != "top_n"}  # the figure's top-n is its own option


def _write(image, out: Path | None, top: list[SalientToken], model: ModelInfo, tokens: torch.Tensor, meta: dict) -> str | None:
    if out is None:
        return None
    figure = draw_token_boxes(image, [t.position for t in top], model.grid, scale=_scale(model.image_size))
    return str(save_png(figure, Path(out), None, model.name, {**meta, "figure": "token boxes"}))


def picture_key(png, model: ModelInfo, tokens: torch.Tensor) -> int:
    """A PNG's noise key: its generated image's identity from the metadata, else its token content."""
    meta = png.meta
    if png.model_name == model.name and all(k in meta for k in ("class_id", "split", "seed", "sampler")):
        return image_key(model.name, meta["class_id"], meta["split"], meta["seed"], meta["sampler"])
    return derive_seed("picture", model.name, ",".join(map(str, tokens.reshape(-1).tolist())))


def _class_by_id(store: Store, model: ModelInfo, class_id: int) -> ClassInfo:
    for c in model_registry.classes(store, model):
        if c.class_id == class_id:
            return c
    raise CortexError(f"class id {class_id} is not a class of model {model.name!r}")


def _extractor(store: Store, model: ModelInfo, name: str | None, device, extractor=None):
    info = get_extractor(store, model, name)
    return info, extractor if extractor is not None else load_extractor(info, device)


def _explained(info, about: Subject, score: str) -> tuple[Target, int | None, str, str | None]:
    """(target, class id or None, name, concept name or None) of what `about` explains."""
    return subjects.index_target(info, about, score), about.class_id, about.name, about.concept_name


def _saliency(ext, emb, goal: Target, class_id: int, key: int, settings: SaliencySettings, codebook) -> torch.Tensor:
    """The TSV map (m x m) of one embedding for a class's logit or a concept's score, as `cortex index` computes it."""
    return token_saliency(goal.explained(ext), emb, goal.per_image([class_id]), [key], settings, codebook=codebook)[0].cpu()


def _indexed_map(store: Store, model: ModelInfo, image_id: int, extractor_id: int | None, wanted: set[str]) -> tuple[int, bytes] | None:
    """(run id, packed TSV map) of the newest run explaining one of the `wanted` targets that indexed the image, or None."""
    for run in index_store.runs(store, model.id, extractor_id):  # newest first
        if run.target in wanted:
            found = index_store.saliency_maps(store, run.id, [image_id]).get(image_id)
            if found is not None:
                return run.id, found
    return None


def explain_png(
    store: Store,
    path: Path,
    *,
    model_name: str | None = None,
    extractor_name: str | None = None,
    top_n: int = 5,
    settings: SaliencySettings = SaliencySettings(),
    device: torch.device | str = "cpu",
    out: Path | None = None,
    extractor: torch.nn.Module | None = None,
    target: SubjectLike | str | int | None = None,
    score: str = DEFAULT_RULE,
) -> ExplainResult:
    """Saliency of one picture; nothing is written to the index.

    Tokens come from the PNG's cortex metadata, else the VQGAN encodes the (centre-cropped) picture.
    The explained logit is `target`'s when given (a concept: its score `score`), else that of the
    class in the PNG's metadata, else of the class the extractor predicts.

    Args:
        store: the open database (read only here).
        path: a PNG written by cortex, or any picture.
        model_name: the model [default: the PNG's model, else mini].
        extractor_name: which extractor [default: 'ce'].
        top_n: tokens to list and box.
        settings: saliency parameters: method and its parameters, reduce, precision.
        device: where to compute.
        out: write the Figure-2 style PNG here.
        extractor: an already loaded f_Y (tests).
        target: explain this class or named concept instead (a name or id is resolved in the picture's model, `subjects.subject`).
        score: a concept's union score ('logsumexp' or 'log-prob'; an extractor trained for it: its own).

    Returns:
        ExplainResult.
    """
    settings.validate()
    if top_n < 1:
        raise CortexError(f"--top-n must be >= 1, got {top_n}")
    png = read_png(Path(path))
    model = model_registry.get_model(store, model_name or png.model_name)
    if target is not None:
        target = subjects.subject(store, model, target)
    vqgm = model_registry.load_model(model, device)
    picture = to_pil(from_pil([png.image], model.image_size))[0]
    if png.tokens is not None:
        if tuple(png.tokens.shape) != (model.grid, model.grid) or int(png.tokens.max()) >= model.n_embed:
            raise CortexError(f"the tokens in {str(path)!r} do not fit model {model.name!r} ({model.grid}x{model.grid}, K={model.n_embed}); pass --model")
        tokens, tokens_from = png.tokens, "PNG metadata"
    else:
        tokens, tokens_from = vqgm.encode_images(from_pil([png.image], model.image_size))[0].cpu(), "VQGAN encoding"
    info, ext = _extractor(store, model, extractor_name, device, extractor)
    with torch.no_grad():
        emb = vqgm.embed(tokens[None])
    meta_class = png.meta.get("class_id") if png.model_name == model.name else None
    if target is not None:
        item, source = target, f"given {target.kind}"
    elif isinstance(meta_class, int):
        item, source = Subject.of(_class_by_id(store, model, meta_class)), "PNG metadata"
    else:
        with torch.no_grad():
            predicted = int(ext(emb.float()).argmax(dim=1)[0])
        item, source = Subject.of(_class_by_id(store, model, predicted)), "predicted by the extractor"
    goal, class_id, name, concept = _explained(info, item, score)
    tsv = _saliency(ext, emb, goal, class_id if class_id is not None else 0, picture_key(png, model, tokens), settings, vqgm.codebook)
    top = _top(tsv, tokens, top_n)
    written = _write(picture, out, top, model, tokens, {"source": str(path), **_explained_meta(class_id, concept, goal.key)})
    return ExplainResult(model.name, info.name, str(path), class_id, name, source, tokens_from, "computed", top, written,
                         _settings_dict(settings), concept, goal.key)


def _explained_meta(class_id: int | None, concept: str | None, key: str) -> dict[str, Any]:
    """A figure's PNG text naming what it explains: the class id, or the concept and its target key."""
    return {"class_id": class_id} if concept is None else {"concept": concept, "target": key}


def show_image(
    store: Store,
    model: ModelInfo,
    image_id: int,
    *,
    extractor_name: str | None = None,
    top_n: int = 5,
    out: Path | None = None,
    device: torch.device | str = "cpu",
    settings: SaliencySettings = SaliencySettings(),
    extractor: torch.nn.Module | None = None,
    target: SubjectLike | None = None,
    score: str = DEFAULT_RULE,
) -> ExplainResult:
    """A stored image with boxes on its top-n tokens (paper Figure 2).

    Uses the newest indexed TSV map of the image that explains the same target (of `extractor_name` if
    given): its class's logit, or with `target` a concept's score (that concept's runs); an image not
    indexed for it, or another class than its own, is explained on the fly with `settings`.

    Args:
        store: the open database.
        model: the image's model.
        image_id: a stored image id (see `cortex generate --json`).
        extractor_name: restrict to runs of this extractor.
        top_n: boxes to draw.
        out: where to write the PNG.
        device: where to compute (only when not indexed).
        settings: saliency parameters for the on-the-fly case.
        extractor: an already loaded f_Y (tests).
        target: explain this class or named concept instead of the image's class.
        score: a concept's union score ('logsumexp' or 'log-prob').

    Returns:
        ExplainResult.
    """
    if top_n < 1:
        raise CortexError(f"--top-n must be >= 1, got {top_n}")
    class_id = image_class_id(store, model.id, image_id)
    if class_id is None:
        raise NotFound(f"image {image_id} is not a stored image of model {model.name!r}; see `cortex generate --json` for ids")
    cls = _class_by_id(store, model, int(class_id))
    item = Subject.of(target if target is not None else cls)
    tokens = image_tokens(store, model, [image_id])
    ext_id = None
    if extractor_name is not None:
        ext_id = extractor_id(store, model, extractor_name)
    if not item.is_class:  # that concept's runs (of the named extractor: its own score if trained for it)
        named = get_extractor(store, model, extractor_name) if extractor_name is not None else None
        wanted = {subjects.index_target(named, item, score).key if named is not None else item.target(score).key}
    else:  # class runs explain each image's own class: another class's logit is never indexed for it
        wanted = {CLASS} if item.lead.pk == cls.pk else set()
    goal_key = next(iter(wanted), CLASS)
    found = _indexed_map(store, model, image_id, ext_id, wanted)
    if found is not None:
        run_id, blob = found
        tsv, tsv_from = unpack_tsv(blob, model.grid), f"index run {run_id}"
        ext_name = index_store.run_extractor_name(store, run_id)
        used = {}
    else:
        settings.validate()
        info, ext = _extractor(store, model, extractor_name, device, extractor)
        ext_name = info.name
        goal = subjects.index_target(info, item, score)
        goal_key = goal.key
        vqgm = model_registry.load_model(model, device)
        with torch.no_grad():
            emb = vqgm.embed(tokens)
        key = image_keys(store, model, [image_id])[0]
        explained_id = item.class_id if item.is_class else 0
        tsv, tsv_from = _saliency(ext, emb, goal, explained_id, key, settings, vqgm.codebook), "computed"
        used = _settings_dict(settings)
    concept, class_out = item.concept_name, item.class_id
    source = "stored class" if target is None else f"given {item.kind}"
    top = _top(tsv, tokens[0], top_n)
    written = None
    if out is not None:
        picture = to_pil(model_registry.load_model(model, device).decode_tokens(tokens))[0]
        written = _write(picture, out, top, model, tokens[0], {"image_id": image_id, **_explained_meta(class_out, concept, goal_key)})
    return ExplainResult(model.name, ext_name, str(image_id), class_out, item.name, source, "store", tsv_from, top, written, used,
                         concept, goal_key)


def show_picture(
    store: Store,
    source: int | Path,
    *,
    model_name: str | None = None,
    extractor_name: str | None = None,
    top_n: int = 5,
    out: Path | None = None,
    device: torch.device | str = "cpu",
    settings: SaliencySettings = SaliencySettings(),
    target: SubjectLike | str | int | None = None,
    score: str = DEFAULT_RULE,
) -> ExplainResult:
    """Figure 2 of a stored image by id (`show_image`; model default: mini) or of a picture by path (`explain_png`; model
    default: the PNG's); a `target` name or id is resolved in that model (`subjects.subject`)."""
    if isinstance(source, int):
        model = model_registry.get_model(store, model_name)
        item = subjects.subject(store, model, target) if target is not None else None
        return show_image(store, model, source, extractor_name=extractor_name, top_n=top_n, out=out, device=device, settings=settings,
                          target=item, score=score)
    return explain_png(store, Path(source), model_name=model_name, extractor_name=extractor_name, top_n=top_n, settings=settings,
                       device=device, out=out, target=target, score=score)


def show_token(
    store: Store,
    model: ModelInfo,
    about: SubjectLike,
    token: int,
    out: Path,
    *,
    extractor_name: str | None = None,
    limit: int = 12,
    ncols: int = 6,
    device: torch.device | str = "cpu",
) -> TokenFigureResult:
    """A grid of indexed images of `about` with `token` boxed wherever it is salient (paper Figure 5).

    A concept reads its own run (`rankings.pick_run`) over its member classes' images.

    Args:
        store: the open database.
        model, about: the model and the class or named concept.
        token: a codebook index.
        out: where to write the PNG.
        extractor_name: read the newest run of this extractor [default: any].
        limit: at most this many images (lowest ids first).
        ncols: images per row.
        device: where to decode.

    Returns:
        TokenFigureResult.

    Raises:
        CortexError: class not indexed, token out of range, or never salient in this class.
    """
    if not 0 <= token < model.n_embed:
        raise CortexError(f"token {token} is outside model {model.name!r}'s codebook (0..{model.n_embed - 1})")
    if limit < 1:
        raise CortexError(f"--limit must be >= 1, got {limit}")
    about = Subject.of(about)
    run = pick_run(store, model, about, extractor=extractor_name)
    rows = query_store.token_positions(store, run.id, about.class_pks, token, limit)
    total = query_store.token_image_count(store, run.id, about.class_pks, token)
    if not rows:
        raise CortexError(f"token {token} is not among the top-{run.top_n} tokens of any indexed {about.name!r} image; see `cortex top-tokens '{about.name}'`")
    positions: dict[int, list[int]] = {}
    for image_id, position in rows:
        positions.setdefault(int(image_id), []).append(int(position))
    ids = list(positions)
    vqgm = model_registry.load_model(model, device)
    pictures = to_pil(vqgm.decode_tokens(image_tokens(store, model, ids)))
    scale = _scale(model.image_size) if model.image_size < 128 else 1
    tiles = [draw_token_boxes(p, positions[i], model.grid, scale=scale) for p, i in zip(pictures, ids)]
    figure = image_grid(tiles, ncols, labels=[f"image {i}" for i in ids])
    meta = {**_explained_meta(about.class_id, about.concept_name, run.target), "token": token, "figure": "token grid"}
    written = save_png(figure, Path(out), None, model.name, meta)
    return TokenFigureResult(model.name, about.class_id, about.name, token, run.id, total, ids, str(written), about.concept_name, run.target)
