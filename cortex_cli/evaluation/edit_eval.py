"""Editing evaluation (paper Table 3): token selection vs embedding optimisation, scored by judges.

Over pairs of concepts (both directions, several images each) a fixed region of each source image is
optimised toward the target concept by each extractor with each method; the judges score the decoded
images before and after. We report, per judge, Acc_orig, P_orig and P_targ before, and ΔP_orig /
ΔP_targ (eq. 10) per method and extractor at the FINAL optimisation step (picking the best step by
the judges' own scores would leak the evaluator into the method).

Images and regions:
- mini model: the mini world's concept pairs that differ only in a part (bird heads, candle flames,
  mushroom caps, sails). Source images are mini-world images (split 'edit') encoded with the VQGAN;
  the region is the (m/4) x (m/4) token window (4x4 on 16x16, the paper's size) centred on the
  centroid of that image's ground-truth part mask, clamped to the grid: the region is fixed before
  any optimisation and is the same for both methods.
- other models: `pairs` must be given; source images are generated test images of the source class
  and the region is the `region` argument (default: the centre (m/4) x (m/4) window).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .. import registry
from ..errors import CortexError
from ..optimize import OptimizeSettings, optimize_tokens
from ..registry import ModelInfo
from ..regions import Region, parse_region
from ..store.database import Store
from . import common, plots
from .metrics import EditEffect, edit_effect

METHODS = ("embedding", "token")
SPLIT = "edit"  # mini-world split of the source images (seeds disjoint from training)


@dataclass
class EditEvalSettings:
    """What `cortex eval edit` measures."""

    images_per_direction: int = 2  # source images per (source, target) direction
    steps: int = 150  # optimisation steps (cortex edit's default is 3000; the final step is scored)
    seed: int = 0  # world-image / generated-image seeds and the optimiser's seed
    pairs: tuple[tuple[str, str], ...] = ()  # (a, b) class specs; empty: the mini world's concept pairs
    region: str | None = None  # non-mini models: region of every source image (default: centre window)
    methods: tuple[str, ...] = METHODS


@dataclass
class EditItem:
    """One source image and its fixed region."""

    source: int  # class id
    target: int
    key: str  # where it came from (world seed or image id)
    region: str  # R0:R1,C0:C1
    tokens: list[list[int]]


@dataclass
class EditEvalResult:
    model: str
    n_edits: int  # source images (each edited by every method x extractor)
    judges: list[str]
    extractors: list[str]
    methods: list[str]
    steps: int
    table: dict[str, dict[str, EditEffect]]  # judge -> '<method>/<extractor>' -> effect (before numbers repeat)
    token_beats_embedding: dict[str, dict[str, bool]]  # judge -> extractor -> ΔP_orig lower and ΔP_targ higher
    items: list[EditItem]
    seconds: float
    settings: dict = field(default_factory=dict)
    json_path: str = ""
    plot_path: str = ""
    evaluation_id: int = 0


def window_around(mask: np.ndarray, grid: int, size: int) -> Region:
    """The size x size token window centred on the mask's centroid (in token units), inside the grid."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        cy, cx = grid / 2, grid / 2
    else:
        cy, cx = (ys.mean() + 0.5) * grid / h, (xs.mean() + 0.5) * grid / w
    r0 = int(min(max(round(cy - size / 2), 0), grid - size))
    c0 = int(min(max(round(cx - size / 2), 0), grid - size))
    return Region((r0, r0 + size), (c0, c0 + size))


def _mini_items(model: ModelInfo, vqgm, pairs: list[tuple[int, int]], per_direction: int, seed: int) -> list[EditItem]:
    from ..miniworld import world

    size = max(1, model.grid // 4)
    items = []
    for a, b in pairs:
        for src, tgt in ((a, b), (b, a)):
            for i in range(per_direction):
                s = world.sample(src, seed + i, SPLIT)
                x = torch.from_numpy(s.image).permute(2, 0, 1)[None].float() / 127.5 - 1
                tokens = vqgm.encode_images(x.to(vqgm.device))[0].cpu()
                region = window_around(s.part_mask if s.part_mask.any() else s.mask, model.grid, size)
                items.append(EditItem(src, tgt, f"world:{SPLIT}:{seed + i}", str(region), tokens.tolist()))
    return items


def _generated_items(store: Store, model: ModelInfo, pairs: list[tuple[int, int]], per_direction: int, seed: int,
                     region: Region, device) -> list[EditItem]:
    from ..generation import ensure_images, image_tokens

    by_id = {c.class_id: c for c in registry.classes(store, model)}
    items = []
    for a, b in pairs:
        for src, tgt in ((a, b), (b, a)):
            ids = ensure_images(store, model, by_id[src], "test", per_direction, seed=seed, device=device)
            for image_id, grid in zip(ids, image_tokens(store, model, ids)):
                items.append(EditItem(src, tgt, f"image:{image_id}", str(region), grid.tolist()))
    return items


def _pairs(store: Store, model: ModelInfo, specs: Sequence[tuple[str, str]]) -> list[tuple[int, int]]:
    if specs:
        out = []
        for a, b in specs:
            ca, cb = registry.resolve_class(store, model, a), registry.resolve_class(store, model, b)
            if ca.class_id == cb.class_id:
                raise CortexError(f"pair {a}:{b} names the same class twice; give two different classes")
            out.append((ca.class_id, cb.class_id))
        return out
    if model.labels != "mini":
        raise CortexError(f"model {model.name!r} has no built-in concept pairs; give --pairs A:B,C:D (class ids or names)")
    from ..miniworld import world

    return world.concept_pairs()


def run_edit_eval(
    store: Store,
    model: ModelInfo,
    *,
    extractors: str = "all",
    settings: EditEvalSettings = EditEvalSettings(),
    device: torch.device | str = "cpu",
    out_dir: str | Path | None = None,
    judge_weights: str | Path | None = None,
    judges: Sequence | None = None,
    progress: common.Progress | None = None,
) -> EditEvalResult:
    """Run the editing evaluation (Table 3), write JSON + PNG, and store the result.

    Args:
        store: the open database.
        model: the model whose images are edited.
        extractors: 'all' or comma-separated extractor names.
        settings: images per direction, steps, seed, pairs, region, methods.
        device: where models run.
        out_dir: where `edit.json`/`.png` go (default `$CORTEX_HOME/reports/<model>/`).
        judge_weights: extra directory of ImageNet judge weights.
        judges: judges to use instead of the model's (tests, custom judges).
        progress: progress(done, total, info=...) callback.

    Returns:
        EditEvalResult (also stored in the `evaluations` table).
    """
    from ..extractors.registry import load_extractor

    if settings.images_per_direction < 1:
        raise CortexError(f"--images-per-direction must be >= 1, got {settings.images_per_direction}")
    bad = [m for m in settings.methods if m not in METHODS]
    if bad or not settings.methods:
        raise CortexError(f"--methods must be among {', '.join(METHODS)}, got {bad or 'none'}")
    OptimizeSettings(steps=settings.steps).validate()
    start = time.perf_counter()
    out = common.prepare_out_dir(out_dir, model)
    pairs = _pairs(store, model, settings.pairs)
    infos = common.resolve_extractors(store, model, extractors)
    judge_list = list(judges) if judges is not None else common.load_judges(model, device, judge_weights)
    vqgm = registry.load_model(model, device)
    if model.labels == "mini" and not settings.pairs:
        items = _mini_items(model, vqgm, pairs, settings.images_per_direction, settings.seed)
    else:
        size = max(1, model.grid // 4)
        lo = (model.grid - size) // 2
        region = parse_region(settings.region, model.grid) if settings.region else Region((lo, lo + size), (lo, lo + size))
        items = _generated_items(store, model, pairs, settings.images_per_direction, settings.seed, region, device)
    source = torch.tensor([it.tokens for it in items], dtype=torch.long)
    orig = [it.source for it in items]
    targ = [it.target for it in items]
    before = common.judge_probabilities(judge_list, common.decode(vqgm, source))
    table: dict[str, dict[str, EditEffect]] = {j.name: {} for j in judge_list}
    total = len(infos) * len(settings.methods) * len(items)
    done = 0
    for info in infos:
        net = load_extractor(info, device)
        for method in settings.methods:
            opt = OptimizeSettings(steps=settings.steps, method=method, seed=settings.seed)
            edited = []
            for it, grid in zip(items, source):
                region_mask = parse_region(it.region, model.grid).mask(model.grid)
                edited.append(optimize_tokens(net, vqgm.codebook.detach(), grid, region_mask, it.target, opt).tokens)
                done += 1
                common.tick(progress, done, total, f"{method} / {info.name}")
            after = common.judge_probabilities(judge_list, common.decode(vqgm, torch.stack(edited)))
            for j in judge_list:
                table[j.name][f"{method}/{info.name}"] = edit_effect(before[j.name], after[j.name], orig, targ)
    beats: dict[str, dict[str, bool]] = {}
    if set(METHODS) <= set(settings.methods):
        for j in judge_list:
            beats[j.name] = {
                info.name: (
                    table[j.name][f"token/{info.name}"].delta_p_orig < table[j.name][f"embedding/{info.name}"].delta_p_orig
                    and table[j.name][f"token/{info.name}"].delta_p_targ > table[j.name][f"embedding/{info.name}"].delta_p_targ
                )
                for info in infos
            }
    result = EditEvalResult(
        model=model.name, n_edits=len(items), judges=[j.name for j in judge_list], extractors=[i.name for i in infos],
        methods=list(settings.methods), steps=settings.steps, table=table, token_beats_embedding=beats, items=items,
        seconds=0.0, settings=asdict(settings),
    )
    columns = list(next(iter(table.values())).keys())
    plot = plots.bar_panels(
        list(table),
        {
            "ΔP_orig (lower is better)": {c: [table[j][c].delta_p_orig for j in table] for c in columns},
            "ΔP_targ (higher is better)": {c: [table[j][c].delta_p_targ for j in table] for c in columns},
        },
        out / "edit.png", ylabel="change in judge probability",
        title=f"{model.name}: edits toward the paired concept ({len(items)} images, {settings.steps} steps)",
    )
    result.plot_path = str(plot)
    result.json_path = str(out / "edit.json")
    result.seconds = round(time.perf_counter() - start, 2)
    common.write_json(Path(result.json_path), result)
    params = asdict(settings) | {"extractors": extractors}
    result.evaluation_id = common.record_evaluation(store, model, "edit", params, asdict(result), plot)
    return result
