"""Token-level image editing: optimise a region's tokens toward a target concept and write the PNGs.

Flow: read the PNG (its token grid from cortex metadata, else VQGAN-encoded) -> optimise the region
(`token_selection.optimize_tokens`, a batch of one) -> decode -> score before/after with the extractor and the judges ->
write the final PNG (with tokens, so edits chain), snapshots and a strip -> one `edits` row.

The target is a class or a named concept (`concepts.ConceptInfo`). A concept's objective is its score
(`concepts.index_target`, with the union score that `--objective` names: 'logit' -> logsumexp of the
members' logits, 'log-prob' -> log P(concept)); its P(target) is the sum of its members' probabilities
(extractor and judges). The row keeps the first member's class id in `target_class` and the
target's key in `target` ('class' for a class).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..models import concepts
from ..backends.base import from_pil, to_pil
from ..models.concepts import ConceptInfo
from ..core.errors import CortexError
from ..core.results import Result
from ..extractors.architectures import logits_of
from ..extractors.registry import ensure_bundled_extractors, get_extractor, load_extractor
from ..images.figures import edit_strip
from ..images.generation import class_slug
from ..judges.pixel_judges import judge_probabilities, judges_or_notice, target_probability
from ..models.targets import BINARY, CLASS, Target
from .token_selection import UNION_RULE, OptimizeSettings, optimize_tokens
from ..images.pngmeta import read_png, save_png
from ..core.progress import Progress
from .realism import prior_nll_or_none
from .regions import Region
from ..models.registry import ClassInfo, ModelInfo, classes, load_model
from ..store.database import Store
from ..store.edits import NewEdit, pending_edit
from ..images.token_blobs import pack_tokens


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
class EditResult(Result):
    """What `edit_image` did and wrote."""

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
    params: dict = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    target: str = CLASS  # what was optimised: 'class', or a concept's target key (`targets.Target.key`)
    concept: str | None = None  # the concept's name when the target is a concept
    target_classes: list[int] = field(default_factory=list)  # the class, or the concept's members
    # per-token NLL under the model's prior of the result / source grid, conditioned on the target class (a concept:
    # its first member's); None when the backend has no `prior_nll` (`realism.py`)
    prior_nll: float | None = None
    prior_nll_source: float | None = None

    def table_rows(self) -> list[dict[str, Any]]:
        """One row per scorer (the extractor, each judge): P(source) and P(target) before and after."""
        return [asdict(p) for p in self.probabilities]

def load_extractor_for(store: Store, model: ModelInfo, name: str | None, device: torch.device | str):
    """(network, registered extractor info) of a registered extractor of `model`."""
    if model.is_mini:
        ensure_bundled_extractors(store)
    info = get_extractor(store, model, name)
    return load_extractor(info, device), info


def edit_goal(extractor_info, target: ClassInfo | ConceptInfo, objective: str) -> tuple[Target, int | Target]:
    """(the target, what the optimiser maximises): a class id, or a concept's `Target` with `objective`'s union score."""
    goal = concepts.index_target(extractor_info, target, UNION_RULE[objective])
    if goal.is_class:  # a class, or a concept of one member: that class's logit
        return goal, (target.class_ids[0] if isinstance(target, ConceptInfo) else target.class_id)
    return goal, goal


def target_probabilities(probs: torch.Tensor, target: ClassInfo | ConceptInfo, goal: Target) -> torch.Tensor | None:
    """P(target) per row of softmax probabilities (B x outputs): a class's, a concept's members' sum, a binary extractor's
    concept output; None when the target is beyond these outputs."""
    if goal.rule == BINARY:
        return probs[:, 1] if probs.shape[1] == 2 else None
    return target_probability(probs, target.class_ids if isinstance(target, ConceptInfo) else [target.class_id])


def source_tokens(png, model: ModelInfo, png_path: Path, notices: list[str]) -> torch.Tensor | None:
    """Tokens from the PNG's metadata (checked against `model`), or None when it has none."""
    if png.tokens is None:
        return None
    if png.model_name is not None and png.model_name != model.name:
        raise CortexError(f"image {str(png_path)!r} was made by model {png.model_name!r}; pass --model {png.model_name}")
    if tuple(png.tokens.shape) != (model.grid, model.grid):
        raise CortexError(
            f"image {str(png_path)!r} carries a {png.tokens.shape[0]}x{png.tokens.shape[1]} token grid; "
            f"model {model.name!r} uses {model.grid}x{model.grid}"
        )
    if int(png.tokens.max()) >= model.n_embed:
        raise CortexError(f"image {str(png_path)!r} carries token ids up to {int(png.tokens.max())}; model {model.name!r} has {model.n_embed}")
    return png.tokens.long()


def edit_image(
    store: Store,
    model: ModelInfo,
    png_path: Path,
    target: ClassInfo | ConceptInfo,
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
    png_path = Path(png_path)
    notices: list[str] = []
    if save_every is not None and save_every <= 0:
        raise CortexError(f"--save-every must be a positive number of steps, got {save_every}")
    snapshot_steps = tuple(range(save_every, settings.steps, save_every)) if save_every else ()
    settings = OptimizeSettings(**{**asdict(settings), "snapshot_steps": snapshot_steps}).validate()
    region.check(model.grid)
    target_ids = target.class_ids if isinstance(target, ConceptInfo) else [target.class_id]
    if not target_ids:
        raise CortexError(f"concept {target.name!r} has no member class to edit toward")
    for class_id in target_ids:
        if class_id < 0 or (model.n_classes and class_id >= model.n_classes):
            raise CortexError(f"target class {class_id} is outside model {model.name!r}'s classes")
    out_dir = Path(out_dir).expanduser() if out_dir is not None else png_path.parent
    if out_dir.exists() and not out_dir.is_dir():
        raise CortexError(f"--out {str(out_dir)!r} is a file; give a directory")

    png = read_png(png_path)
    tokens = source_tokens(png, model, png_path, notices)
    extractor, ext_info = load_extractor_for(store, model, extractor_name, device)
    extractor_id, extractor_label = ext_info.id, ext_info.name
    goal, objective_target = edit_goal(ext_info, target, settings.objective)
    vqgm = load_model(model, device)
    if tokens is None:
        tokens = vqgm.encode_images(from_pil([png.image], model.image_size))[0].cpu()
        notices.append(
            f"{png_path.name} carries no cortex tokens; encoded it with the VQGAN at {model.image_size}x{model.image_size} px "
            "(centre-cropped and resized)"
        )
    judges = judges_or_notice(model, device, notices)
    class_names = {c.class_id: c.name for c in classes(store, model)}
    codebook = vqgm.codebook.detach()

    def extractor_probs(grid: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = logits_of(extractor(vqgm.embed(grid[None].to(device))))
            return F.softmax(out.float(), dim=-1)[0].cpu()

    before = extractor_probs(tokens)
    binary = goal.rule == BINARY  # an extractor trained for the concept: its 2 outputs are not classes
    if not binary and max(target_ids) >= before.numel():
        raise CortexError(f"target class {max(target_ids)} is outside extractor {extractor_label!r}'s {before.numel()} classes")
    source_class = png.meta.get("class_id") if isinstance(png.meta.get("class_id"), int) else None
    if binary:
        source_class = source_class if source_class in class_names else None
    elif source_class is None or not 0 <= source_class < before.numel():
        source_class = int(before.argmax())
        notices.append(f"source class taken from the extractor's prediction: {class_names.get(source_class, source_class)}")

    # -- optimise --------------------------------------------------------------------------
    result = optimize_tokens(extractor, codebook, tokens, region.mask(model.grid), objective_target, settings, progress)

    # -- score -----------------------------------------------------------------------------
    after = extractor_probs(result.tokens)
    grids = torch.stack([tokens, result.tokens])
    images = vqgm.decode_tokens(grids)
    ext_target = target_probabilities(torch.stack([before, after]), target, goal)
    ext_source = not binary and source_class is not None
    scores = [Probabilities(f"extractor:{extractor_label}", float(before[source_class]) if ext_source else None,
                            float(after[source_class]) if ext_source else None, float(ext_target[0]), float(ext_target[1]))]
    for name, p in judge_probabilities(judges, images).items():
        has_source = source_class is not None and source_class < p.shape[1]
        judged = target_probability(p, target_ids)
        if judged is None:
            notices.append(f"judge {name} scores {p.shape[1]} classes, not all of the target's; left out")
            continue
        scores.append(Probabilities(
            f"judge:{name}",
            float(p[0, source_class]) if has_source else None, float(p[1, source_class]) if has_source else None,
            float(judged[0]), float(judged[1]),
        ))
    m = model.grid
    changed = [Change(pos, pos // m, pos % m, old, new) for pos, old, new in result.changed]
    snap_steps = sorted(result.snapshots)
    snap_images = to_pil(vqgm.decode_tokens(torch.stack([result.snapshots[s] for s in snap_steps]))) if snap_steps else []
    source_pil, final_pil = to_pil(images)
    params = {**asdict(settings), "extractor": extractor_label, "save_every": save_every}
    if isinstance(target, ConceptInfo):
        params["concept"] = target.name
    params["snapshot_steps"] = list(snap_steps)
    probabilities = [asdict(s) for s in scores]

    target_class = target.members[0] if isinstance(target, ConceptInfo) else target  # a concept: its first member
    realism = prior_nll_or_none(vqgm, grids, [target_class] * 2)  # under the target

    # -- write: the row and the files succeed or fail together ----------------------------
    written: list[Path] = []
    stem = class_slug(png_path.stem)
    try:
        new = NewEdit(
            model_id=model.id, extractor_id=extractor_id, source_class=source_class, target_class=target_ids[0], target=goal.key,
            method=settings.method, region=str(region), source_tokens=pack_tokens(tokens, model.n_embed),
            result_tokens=pack_tokens(result.tokens, model.n_embed), params=json.dumps(params, sort_keys=True),
            probabilities=json.dumps(probabilities, sort_keys=True), source_path=str(png_path.resolve()),
        )
        with pending_edit(store, new) as row:  # the row commits only if every file below is written
            edit_id = row.id
            base = out_dir / f"{stem}.edit{edit_id}-{class_slug(target.name)}"
            meta = {"edit_id": edit_id, "edit_of": str(png_path.resolve()), "target_class_id": target_ids[0],
                    "target_name": target.name, "region": str(region), "method": settings.method}
            if isinstance(target, ConceptInfo):
                meta.update(concept=target.name, target=goal.key)
            output_path = Path(f"{base}.png")
            for path in [output_path, Path(f"{base}-strip.png")] + [Path(f"{base}-step{st:05d}.png") for st in snap_steps]:
                if path.exists():
                    raise CortexError(f"{str(path)!r} already exists; choose another --out directory")
            snapshot_paths = []
            for st, pil in zip(snap_steps, snap_images):
                path = Path(f"{base}-step{st:05d}.png")
                written.append(save_png(pil, path, result.snapshots[st], model.name, {**meta, "step": st}, n_embed=model.n_embed))
                snapshot_paths.append(path)
            written.append(save_png(final_pil, output_path, result.tokens, model.name, {**meta, "step": settings.steps}, n_embed=model.n_embed))
            strip = edit_strip([source_pil, *snap_images, final_pil], ["source", *[f"step {st}" for st in snap_steps], f"final ({settings.steps})"], (region.rows, region.cols), m)
            strip_path = Path(f"{base}-strip.png")
            written.append(save_png(strip, strip_path, None, model.name, meta))
            row.output_path = str(output_path.resolve())
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise

    return EditResult(
        edit_id=edit_id, model=model.name, extractor=extractor_label, method=settings.method, region=str(region),
        source_path=png_path, output_path=output_path, snapshot_paths=snapshot_paths, strip_path=strip_path,
        source_class=source_class, source_class_name=class_names.get(source_class), target_class=target_ids[0],
        target_name=target.name, source_tokens=tokens.tolist(), result_tokens=result.tokens.tolist(), changed=changed,
        probabilities=scores, loss_start=result.loss_trace[0], loss_end=result.loss_trace[-1], params=params, notices=notices,
        target=goal.key, concept=target.name if isinstance(target, ConceptInfo) else None, target_classes=list(target_ids),
        prior_nll=realism[1] if realism else None, prior_nll_source=realism[0] if realism else None,
    )
