"""`cortex demo`: the tour on the bundled mini model, in about a minute on a CPU.

Steps (each a library call, so the demo can grow more): generate a dozen images of one concept,
index their saliency, list the concept's top tokens beside the frequency baseline, draw the
paper's Figure 2 (red boxes on each image's most salient tokens), edit one image toward the paired
concept, run the same edit recipe once per part-pair direction to say how often it works, and write
the token atlas of the concept (`cortex atlas`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .models import registry as model_registry
from .backends.base import to_pil
from .core.errors import CortexError
from .core.results import Result
from .atlas import AtlasResult, PageSettings, build_atlas
from .images.figures import draw_token_boxes, image_grid
from .images.generation import generate, image_tokens
from .search.edit import EditResult, edit_image
from .evaluation.edit_eval import EditEvalSettings, run_edit_eval
from .extractors.registry import get_extractor, load_extractor
from .index.build import IndexResult, index_class, unpack_tsv
from .miniworld.world import CONCEPTS
from .images.pngmeta import save_png
from .core.progress import Progress, report
from .search.token_selection import OptimizeSettings
from .search.regions import Region
from .index.rankings import TopTokensResult, top_tokens
from .attribution import SaliencySettings, top_positions
from .store.database import Store
from .store.index import saliency_maps

DEMO_CONCEPT = "red-capped bird"  # its pair differs only in the head's colour: an edit you can see
DEMO_IMAGES = 12
DEMO_TOP_N = 5  # boxes per image in the figure
DEMO_K = 10
DEMO_EDIT_STEPS = 400  # enough on the mini model; the paper's 3000 suit ImageNet-size codebooks
DEMO_EDIT_SIDE = 4  # the edited region: a 4x4 token box, as in the paper
DEMO_SWEEP_STEPS = 150  # the sweep over every part-pair direction: `cortex eval edit`'s step count
DEMO_ATLAS = PageSettings(top_k=DEMO_K, neighbours=0, cross_class=0)  # one concept, no neighbour tiles: seconds on a CPU


def region_around(position: int, grid: int, side: int = DEMO_EDIT_SIDE) -> Region:
    """A side x side token box centred (as far as the grid allows) on a grid position."""
    row, col = divmod(position, grid)
    r0 = min(max(row - side // 2, 0), grid - side)
    c0 = min(max(col - side // 2, 0), grid - side)
    return Region((r0, r0 + side), (c0, c0 + side))


@dataclass(frozen=True)
class DemoResult(Result):
    """What the demo did and where its files are."""

    model: str
    concept: str
    images_dir: str
    image_pngs: list[str]
    figure: str
    index: IndexResult
    top_tokens: TopTokensResult
    seconds: float
    edit: EditResult | None = None  # one image edited toward the paired concept
    sweep: dict[str, float] = field(default_factory=dict)  # judge -> share of all part-pair directions' edits it calls the target
    sweep_edits: int = 0
    lines: list[str] = field(default_factory=list)  # closing lines for the terminal
    atlas: AtlasResult | None = None  # the concept's token atlas


def run_demo(
    store: Store,
    out_dir: Path,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    *,
    concept: str = DEMO_CONCEPT,
    n_images: int = DEMO_IMAGES,
    seed: int = 0,
) -> DemoResult:
    """Generate, index, query and draw one concept of the bundled mini model.

    Args:
        store: the open database (rows are added as by `cortex generate` / `cortex index`).
        out_dir: directory for the PNGs (created).
        device: where the models run.
        progress: called as progress(step, steps, info=...).
        concept: which mini concept.
        n_images: how many images to generate and index (seeds 0..n_images-1).
        seed: the tour's randomness: saliency noise (the authors' parameters otherwise), the edit's and the sweep's optimiser.

    Returns:
        DemoResult.

    Raises:
        CortexError: the mini model or its 'ce' extractor is not installed.
    """
    start = time.perf_counter()
    steps = 7

    def step(i: int, info: str) -> None:
        report(progress, i, steps, info)

    model = model_registry.get_model(store, model_registry.MINI_NAME)
    cls = model_registry.resolve_class(store, model, concept)
    ext_info = get_extractor(store, model, "ce")
    extractor = load_extractor(ext_info, device)
    out_dir = Path(out_dir).expanduser()
    images_dir = out_dir / "images"

    step(0, f"generating {n_images} images of '{cls.name}'")
    gen = generate(store, model, cls, n_images, split="train", out_dir=images_dir, device=device)
    step(1, "saliency: indexing")
    indexed = index_class(store, model, ext_info, cls, split="train", n_images=n_images, settings=SaliencySettings(seed=seed),
                          device=device, extractor=extractor)
    step(2, "top tokens")
    top = top_tokens(store, model, cls, extractor=ext_info.name, k=DEMO_K, baseline="frequency", run=indexed.run_id)
    step(3, "figure")
    figure = _figure(store, model, indexed.run_id, gen.image_ids[:6], out_dir / "figure2.png", device)
    edit = None
    pair = _paired_concept(cls.name)
    if pair is not None:
        step(4, f"editing one image toward '{pair}'")
        chosen = _most_typical(extractor, model_registry.load_model(model, device), store, model, gen.image_ids, cls.class_id)
        edit = _edit_step(store, model, indexed.run_id, gen.image_ids[chosen], Path(gen.png_paths[chosen]), pair, out_dir / "edit", seed,
                          device)
    sweep, sweep_edits = {}, 0
    if pair is not None:
        step(5, "the same edit over every part-pair direction")
        sweep, sweep_edits = _sweep(store, model, out_dir / "sweep", seed, device)
    step(6, "token atlas")
    atlas = build_atlas(store, model, out_dir / "atlas", classes=[cls], run=indexed.run_id, settings=DEMO_ATLAS, device=device)
    step(7, "done")
    seconds = time.perf_counter() - start
    best = top.rows[0].token if top.rows else 0
    lines = [
        f"files in {out_dir}: {len(gen.png_paths)} PNGs in {images_dir.name}/, Figure 2 overlay in {Path(figure).name}"
        + (f", edit strip in edit/{Path(edit.strip_path).name}" if edit else "") + f" ({seconds:.0f} s)",
        f"next: cortex top-tokens '{cls.name}' --baseline frequency ; cortex show --class '{cls.name}' --token {best} --out token{best}.png ; "
        f"cortex explain {gen.png_paths[0]} --out explained.png",
        f"token atlas of '{cls.name}' ({atlas.tokens} token pages): open {atlas.index}",
    ]
    return DemoResult(model.name, cls.name, str(images_dir), gen.png_paths, figure, indexed, top, round(seconds, 2), edit, sweep,
                      sweep_edits, lines, atlas)


def _sweep(store: Store, model, out_dir: Path, seed: int, device) -> tuple[dict[str, float], int]:
    """One edit per part-pair direction (first world image, saliency box, CE, token selection): judge success rates.

    One image edited by the demo is a chosen case; this says how often the same recipe works.
    """
    settings = EditEvalSettings(images_per_direction=1, opt_seeds=1, steps=DEMO_SWEEP_STEPS, regions=("saliency",),
                                methods=("token",), seed=seed, realism_images=0)  # the tour shows no realism table
    result = run_edit_eval(store, model, extractors="ce", settings=settings, device=device, out_dir=out_dir)
    return {row.judge: row.effect.acc_targ_after for row in result.rows}, result.n_sources


@torch.no_grad()
def _most_typical(extractor, vqgm, store: Store, model, image_ids: list[int], class_id: int) -> int:
    """Index of the image the extractor finds most typical of its class (a clear source for the edit)."""
    logits = extractor(vqgm.embed(image_tokens(store, model, image_ids)))
    return int(logits.log_softmax(-1)[:, class_id].argmax())


def _paired_concept(name: str) -> str | None:
    return next((c.pair for c in CONCEPTS if c.name == name), None)


def _edit_step(store: Store, model, run_id: int, image_id: int, png: Path, target_name: str, out_dir: Path, seed: int,
               device) -> EditResult:
    """Edit the 4x4 box around the image's most salient token toward the paired concept."""
    blob = saliency_maps(store, run_id, [image_id]).get(image_id)
    if blob is None:
        raise CortexError("the demo's image is missing from the index; rerun `cortex demo`")
    (position, _), = top_positions(unpack_tsv(blob, model.grid), 1)
    region = region_around(position, model.grid)
    target = model_registry.resolve_class(store, model, target_name)
    settings = OptimizeSettings(steps=DEMO_EDIT_STEPS, seed=seed)
    return edit_image(store, model, png, target, region, settings, out_dir=out_dir, save_every=100, device=device)


def _figure(store: Store, model, run_id: int, image_ids: list[int], path: Path, device) -> str:
    """A row of images with their top-DEMO_TOP_N tokens boxed, from the index's TSV maps."""
    maps = saliency_maps(store, run_id, image_ids)
    if len(maps) != len(image_ids):
        raise CortexError("the demo's images are missing from the index; rerun `cortex demo`")
    vqgm = model_registry.load_model(model, device)
    pictures = to_pil(vqgm.decode_tokens(image_tokens(store, model, image_ids)))
    scale = max(1, 192 // model.image_size)
    tiles = [
        draw_token_boxes(p, [pos for pos, _ in top_positions(unpack_tsv(maps[i], model.grid), DEMO_TOP_N)], model.grid, scale=scale)
        for p, i in zip(pictures, image_ids)
    ]
    grid = image_grid(tiles, ncols=len(tiles), labels=[f"image {i}" for i in image_ids])
    return str(save_png(grid, path, None, model.name, {"figure": "token boxes", "run_id": run_id, "image_ids": image_ids}))
