"""Token-level image editing: optimise a region's tokens toward a target concept and write the PNGs.

Flow: read the PNG (its token grid from cortex metadata, else VQGAN-encoded) -> optimise the region
(`token_selection.optimize_tokens`, a batch of one) -> decode -> score before/after with the extractor and the judges ->
write the final PNG (with tokens, so edits chain), snapshots and a strip -> one `edits` row.

The target is a class or a named concept (`subjects.Subject`); what is optimised and scored is its aim
(`outcome.aim_at`): a concept's objective is its score (the union score that `--objective` names: 'logit' ->
logsumexp of the members' logits, 'log-prob' -> log P(concept)); its P(target) is the sum of its members'
probabilities (extractor and judges). The row keeps the first member's class id in `target_class` and the
target's key in `target` ('class' for a class).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..backends.base import to_pil
from ..core.errors import CortexError
from ..core.progress import Progress
from ..extractors.registry import ensure_bundled_extractors, get_extractor, load_extractor
from ..images.generation import class_slug
from ..images.pngmeta import read_png, save_png
from ..images.token_blobs import pack_tokens
from ..judges.pixel_judges import Judge, judges_or_notice
from ..models import subjects
from ..models.registry import ModelInfo, classes, get_model, load_model
from ..models.subjects import Subject, SubjectLike
from ..store.database import Store
from ..store.edits import NewEdit, pending_edit
from .outcome import (Aim, Outcome, aim_at, check_members, encoded_picture, extractor_logits, prior_nll_pair, source_tokens,
                      strip_labels, write_pngs)
from .regions import Region, parse_region
from .token_selection import OptimizeResult, OptimizeSettings, optimize_tokens


@dataclass
class Change:
    """One token the edit replaced."""

    position: int  # row * m + col
    row: int
    col: int
    old: int
    new: int


@dataclass
class Probabilities:
    """One scorer's probabilities of the source class and the target (a concept: its members' sum), before and after the edit."""

    scorer: str  # 'extractor:<name>' or 'judge:<name>'
    source_before: float | None  # None when the source class is unknown
    source_after: float | None
    target_before: float
    target_after: float


@dataclass(frozen=True)
class EditFields:
    """An edit's own fields; `EditResult` ends with `outcome.Outcome`'s (what was aimed at, notices, the prior's NLL)."""

    edit_id: int
    model: str
    extractor: str
    method: str
    region: str
    source_path: Path
    output_path: Path
    snapshot_paths: list[Path]
    strip_path: Path
    source_class: int | None  # class id, from the PNG's metadata or the extractor's prediction
    source_class_name: str | None
    target_class: int  # a concept: its first member's class id
    target_name: str  # the class's or the concept's name
    source_tokens: list[list[int]]
    result_tokens: list[list[int]]
    changed: list[Change]
    probabilities: list[Probabilities]
    loss_start: float
    loss_end: float


@dataclass(frozen=True)
class EditResult(Outcome, EditFields):
    """What `edit_image` did and wrote: `EditFields`, then `Outcome`'s fields (`prior_nll`: of the result grid,
    `prior_nll_source`: of the source grid)."""

    def table_rows(self) -> list[dict[str, Any]]:
        """One row per scorer (the extractor, each judge): P(source) and P(target) before and after."""
        return [asdict(p) for p in self.probabilities]


def load_extractor_for(store: Store, model: ModelInfo, name: str | None, device: torch.device | str):
    """(network, registered extractor info) of a registered extractor of `model`."""
    if model.is_mini:
        ensure_bundled_extractors(store)
    info = get_extractor(store, model, name)
    return load_extractor(info, device), info


def _checked(model: ModelInfo, about: Subject, region: Region, settings: OptimizeSettings, out_dir: Path,
             save_every: int | None) -> OptimizeSettings:
    """The settings with `snapshot_steps` set from `save_every`, once every input is checked (nothing is written yet)."""
    if save_every is not None and save_every <= 0:
        raise CortexError(f"--save-every must be a positive number of steps, got {save_every}")
    snapshot_steps = tuple(range(save_every, settings.steps, save_every)) if save_every else ()
    settings = OptimizeSettings(**{**asdict(settings), "snapshot_steps": snapshot_steps}).validate()
    region.check(model.grid)
    check_members(about, model, "edit toward", "target class")
    if out_dir.exists() and not out_dir.is_dir():
        raise CortexError(f"--out {str(out_dir)!r} is a file; give a directory")
    return settings


def _source_class(png: Any, before: torch.Tensor, aim: Aim, extractor: str, class_names: dict[int, str],
                  notices: list[str]) -> int | None:
    """The edited picture's class: its metadata's, else (a class extractor) the extractor's prediction, with a notice.

    Raises:
        CortexError: a target class beyond the extractor's outputs.
    """
    if not aim.binary and max(aim.class_ids) >= before.numel():
        raise CortexError(f"target class {max(aim.class_ids)} is outside extractor {extractor!r}'s {before.numel()} classes")
    source_class = png.meta.get("class_id") if isinstance(png.meta.get("class_id"), int) else None
    if aim.binary:  # an extractor trained for the concept: its 2 outputs are not classes
        return source_class if source_class in class_names else None
    if source_class is None or not 0 <= source_class < before.numel():
        source_class = int(before.argmax())
        notices.append(f"source class taken from the extractor's prediction: {class_names.get(source_class, source_class)}")
    return source_class


def _scores(before: torch.Tensor, after: torch.Tensor, images: torch.Tensor, aim: Aim, source_class: int | None,
            extractor: str, judges: list[Judge], notices: list[str]) -> list[Probabilities]:
    """P(source class) and P(target) of the source and the edited picture: the extractor's, then each judge's."""
    ext_target = aim.p_target(torch.stack([before, after]))
    ext_source = not aim.binary and source_class is not None
    scores = [Probabilities(f"extractor:{extractor}", float(before[source_class]) if ext_source else None,
                            float(after[source_class]) if ext_source else None, float(ext_target[0]), float(ext_target[1]))]
    for name, (p, judged) in aim.judged(judges, images).items():
        if judged is None:
            notices.append(f"judge {name} scores {p.shape[1]} classes, not all of the target's; left out")
            continue
        has_source = source_class is not None and source_class < p.shape[1]
        scores.append(Probabilities(
            f"judge:{name}",
            float(p[0, source_class]) if has_source else None, float(p[1, source_class]) if has_source else None,
            float(judged[0]), float(judged[1]),
        ))
    return scores


@dataclass
class _Written:
    edit_id: int
    output_path: Path
    snapshot_paths: list[Path]
    strip_path: Path


def _store_and_write(store: Store, model: ModelInfo, row: NewEdit, png_path: Path, out_dir: Path, region: Region, aim: Aim,
                     settings: OptimizeSettings, result: OptimizeResult, pictures: list[Any]) -> _Written:
    """Insert the edit's row and write its PNGs (snapshots, final, strip of `pictures`: the source, each snapshot, the
    final picture); both succeed or neither stays.

    Raises:
        CortexError: a file of that name exists already (the row is rolled back, nothing is written).
    """
    written: list[Path] = []
    steps = sorted(result.snapshots)
    try:
        with pending_edit(store, row) as pending:  # the row commits only if every file below is written
            base = out_dir / f"{class_slug(png_path.stem)}.edit{pending.id}-{class_slug(aim.subject.name)}"
            meta = {"edit_id": pending.id, "edit_of": str(png_path.resolve()), "target_class_id": aim.class_ids[0],
                    "target_name": aim.subject.name, "region": str(region), "method": settings.method, **aim.concept_meta()}
            snapshot_paths = [Path(f"{base}-step{st:05d}.png") for st in steps]
            for path in [Path(f"{base}.png"), Path(f"{base}-strip.png"), *snapshot_paths]:
                if path.exists():
                    raise CortexError(f"{str(path)!r} already exists; choose another --out directory")
            for st, pil, path in zip(steps, pictures[1:-1], snapshot_paths):
                written.append(save_png(pil, path, result.snapshots[st], model.name, {**meta, "step": st}, n_embed=model.n_embed))
            output_path, strip_path = write_pngs(base, model, pictures[-1], result.tokens, pictures,
                                                 strip_labels(steps, settings.steps, "source"), (region.rows, region.cols), meta,
                                                 final_meta={**meta, "step": settings.steps}, written=written)
            pending.output_path = str(output_path.resolve())
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return _Written(pending.id, output_path, snapshot_paths, strip_path)


def edit_image(
    store: Store,
    model: ModelInfo,
    png_path: Path,
    target: SubjectLike,
    region: Region,
    settings: OptimizeSettings,
    *,
    extractor_name: str | None = None,
    out_dir: Path | None = None,
    save_every: int | None = None,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
) -> EditResult:
    """Edit an image's tokens inside `region` toward `target` and write the edited PNGs.

    Everything is validated before optimising; on bad input nothing is written.

    Args:
        store: the opened database (the edit is stored in `edits`).
        model: the registered model the image belongs to.
        png_path: a PNG written by cortex (tokens from its metadata) or any picture (VQGAN-encoded
            after centre-crop and resize to the model's resolution; a notice says so).
        target: the class or named concept to move the region toward (see the module docstring).
        region: token rectangle that may change (checked against the model's grid).
        settings: optimiser settings (`snapshot_steps` is set from `save_every`).
        extractor_name: registered extractor to optimise against (default 'ce').
        out_dir: where to write; default: the source image's directory.
        save_every: also write a snapshot PNG every this many steps (None: none).
        device: torch device for the model, extractor and judges.
        progress: called as progress(steps done, steps, info) while optimising.

    Returns:
        EditResult with the written paths, tokens, changed positions, probabilities and edit id.

    Raises:
        CortexError: bad region/settings/image/model, no extractor, or an unwritable out_dir.
    """
    png_path, about, notices = Path(png_path), Subject.of(target), []
    out_dir = Path(out_dir).expanduser() if out_dir is not None else png_path.parent
    settings = _checked(model, about, region, settings, out_dir, save_every)
    png = read_png(png_path)
    tokens = source_tokens(png, model, png_path, notices)
    extractor, ext_info = load_extractor_for(store, model, extractor_name, device)
    aim = aim_at(ext_info, about, settings.objective)
    vqgm = load_model(model, device)
    tokens = tokens if tokens is not None else encoded_picture(png, png_path, model, vqgm, notices)
    judges = judges_or_notice(model, device, notices)
    class_names = {c.class_id: c.name for c in classes(store, model)}

    def extractor_probs(grid: torch.Tensor) -> torch.Tensor:
        return F.softmax(extractor_logits(extractor, vqgm, grid[None], device), dim=-1)[0].cpu()

    before = extractor_probs(tokens)
    source_class = _source_class(png, before, aim, ext_info.name, class_names, notices)
    result = optimize_tokens(extractor, vqgm.codebook.detach(), tokens, region.mask(model.grid), aim.objective, settings, progress)
    images = vqgm.decode_tokens(torch.stack([tokens, result.tokens]))
    scores = _scores(before, extractor_probs(result.tokens), images, aim, source_class, ext_info.name, judges, notices)
    steps = sorted(result.snapshots)
    snap_images = to_pil(vqgm.decode_tokens(torch.stack([result.snapshots[s] for s in steps]))) if steps else []
    source_pil, final_pil = to_pil(images)
    params = {**asdict(settings), "extractor": ext_info.name, "save_every": save_every, **aim.concept_params()}
    params["snapshot_steps"] = list(steps)
    prior_nll, prior_nll_source = prior_nll_pair(vqgm, result.tokens, tokens, about)  # under the target
    row = NewEdit(
        model_id=model.id, extractor_id=ext_info.id, source_class=source_class, target_class=aim.class_ids[0], target=aim.goal.key,
        method=settings.method, region=str(region), source_tokens=pack_tokens(tokens, model.n_embed),
        result_tokens=pack_tokens(result.tokens, model.n_embed), params=json.dumps(params, sort_keys=True),
        probabilities=json.dumps([asdict(s) for s in scores], sort_keys=True), source_path=str(png_path.resolve()),
    )
    done = _store_and_write(store, model, row, png_path, out_dir, region, aim, settings, result, [source_pil, *snap_images, final_pil])
    m = model.grid
    return EditResult(
        edit_id=done.edit_id, model=model.name, extractor=ext_info.name, method=settings.method, region=str(region),
        source_path=png_path, output_path=done.output_path, snapshot_paths=done.snapshot_paths, strip_path=done.strip_path,
        source_class=source_class, source_class_name=class_names.get(source_class), target_class=aim.class_ids[0],
        target_name=about.name, source_tokens=tokens.tolist(), result_tokens=result.tokens.tolist(),
        changed=[Change(pos, pos // m, pos % m, old, new) for pos, old, new in result.changed], probabilities=scores,
        loss_start=result.loss_trace[0], loss_end=result.loss_trace[-1], params=params, notices=notices,
        prior_nll=prior_nll, prior_nll_source=prior_nll_source, **aim.outcome_fields(),
    )


def edit_picture(store: Store, png_path: Path, target: str | int | SubjectLike, region: str, settings: OptimizeSettings, *,
                 model_name: str | None = None, extractor_name: str | None = None, out_dir: Path | None = None,
                 save_every: int | None = None, device: torch.device | str = "cpu", progress: Progress | None = None) -> EditResult:
    """`edit_image` of a picture in its model (default: the one its cortex PNG names, else mini), with `region` a rectangle's
    text ('R0:R1,C0:C1', 'R,C' or 'all', `regions.parse_region`) and `target` a class or concept name or id (`subjects.subject`).

    Raises:
        CortexError: an unknown model, a bad region or target, and whatever `edit_image` refuses.
    """
    model = get_model(store, model_name if model_name is not None else read_png(png_path).model_name)
    parsed = parse_region(region, model.grid)
    about = subjects.subject(store, model, target)
    return edit_image(store, model, png_path, about, parsed, settings, extractor_name=extractor_name, out_dir=out_dir,
                      save_every=save_every, device=device, progress=progress)
