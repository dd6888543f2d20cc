"""Editing evaluation (paper Table 3): token selection vs embedding optimisation, scored by judges.

Over pairs of concepts (both directions, `images_per_direction` source images each) a region of each
source image is optimised toward the paired concept by each extractor with each method, from
`opt_seeds` optimiser seeds; the judges score the decoded images before and after. Reported per
judge x extractor x region kind x method: Acc_orig, P_orig and P_targ before, ΔP_orig / ΔP_targ
(eq. 10) and the share of edits the judge calls the target, at the FINAL optimisation step (picking
the best step by the judges' own scores would leak the evaluator into the method).

Sources (the paper: 50 test images of each of 10 paired bird classes; both directions):
- mini model: the mini world's concept pairs that differ only in a part (bird heads, candle flames,
  mushroom caps, sails); images of world split 'edit', seeds 0..n-1, encoded with the VQGAN.
  Identity "world:edit:<seed>:<class>". `benchmarks/tune_edit.py`, which picked `cortex edit`'s
  defaults, uses split 'test'; the world's training splits are 'train', 'prior*', 'judge-*'; so
  nothing was tuned on these images.
- other models (`pairs` given): generated images of split 'test', seeds 0..n-1 (sampled if missing),
  identity `seeding.image_key(model, class, 'test', seed, sampler)`. Nothing is tuned on them:
  extractors train on 'train' and pick their epoch on 'val' ('test' is only reported), and
  tune_edit.py reads no generated images.

Regions (each a separate row; all (m/4) x (m/4), 4x4 on 16x16, unless `region` is given):
- fixed: the paper's "fixed 4x4 region within the 16x16 token grid" (§4.4, A.4). The paper does not
  say where it lies; we use the centre window, rows and columns (m - m/4)//2 .. +m/4 (6:10,6:10 on
  16x16), or `region` when given. This is the headline row and the default.
- saliency: the window with the highest summed TSV of the source image's own saliency map for its
  source class, by the extractor being evaluated (SmoothGrad noise keyed by the source identity);
  ties go to the first window in raster order. No ground truth is used.
- oracle: the window centred on the ground-truth part mask (mini world only). It knows where the
  concepts differ, so it is an upper bound, not the paper's protocol; reported and labelled as such.

Seeds: edit i of a source (i < opt_seeds) optimises with seed `edit_seed(model, source key, target,
region kind, run seed, i)`: a function of identities only, never of database row ids, so the same
command gives the same numbers whatever the database held before. The embedding baseline from the
source embedding draws no random numbers: it runs once per source and region and stands for all of
its seeds. Extractors and methods share the seeds (paired comparisons).

Statistics: token - embedding differences of ΔP_targ and ΔP_orig are averaged over a source's seeds
(seeds are nested in sources, so they are not independent evidence), then a paired percentile
bootstrap over sources (2000 resamples with replacement, seeded by the identities of the
comparison) gives the 95% interval. Not stratified by direction: strata of a few sources would
shrink the intervals (to nothing with one source per direction); plain resampling is conservative. The verdict (`token_beats_embedding`) is 'win' only where the
ΔP_targ interval excludes zero on token's side, 'loss' where it excludes zero on the other side,
else 'n.s.'; the same for ΔP_orig (lower is better) in `orig_verdict`.

All edits of one extractor, method and region kind run in batches of `batch_size` through
`token_selection.optimize_batch`, the optimiser `cortex edit` and `cortex optimize` run as batches of
one; each edit's result depends on its own seed only (tested token for token against `cortex edit`).

Cost (2 shared CPU cores, mini model): an edit-step takes ~1.5-2 ms through CE and ~4.5 ms through
RE (near the cores' peak; RE's 13 full-resolution convolutions dominate). The default, the fixed
box alone with 80 sources x 3 token seeds + 1 embedding run, 150 steps, CE and RE, took 318 s wall;
each further region kind adds about as much, so `regions=('all',)` is ~15 minutes on a quiet machine.

Realism (issue 24.4, key `realism`): every edited grid's per-token negative log-likelihood under the model's own
prior conditioned on its target class (`VQGM.prior_nll`), beside the generated range of each target class (the
NLL of its `realism_images` generated train images, seeds 0..n-1; `realism.generated_range`). Reported per
extractor x region kind x method: the mean NLL, the share flagged adversarial (`realism.flag`: above the
target's p95 + MARGIN x (p95 - p5)) and the mean rise over the unedited source under the same target (paired:
an edit changes one box of a source of another class, so its NLL is mostly the source's, and
`source_adversarial_share` says how many sources the flag already calls adversarial). Token selection -
embedding optimisation of that rise gets a paired bootstrap 95% interval over sources ('win': token
selection's grids are likelier). The embedding baseline's grids are its final embedding's nearest tokens,
as everywhere in this evaluation. None when the backend has no prior NLL or `realism_images` is 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..models import registry as model_registry
from ..search import realism
from ..core.errors import CortexError
from .common import EvaluationResult
from ..extractors.registry import load_extractor
from ..images.generation import generate, image_tokens
from ..miniworld import world
from ..judges.pixel_judges import judge_probabilities
from ..search.token_selection import OptimizeSettings, optimize_batch
from ..models.registry import ModelInfo
from ..search.regions import Region, parse_region
from ..attribution import SaliencySettings
from ..core.seeding import derive_seed, image_key
from ..store.database import Store
from . import common, plots
from .metrics import BootstrapCI, EditEffect, edit_effect, paired_bootstrap_ci, verdict
from .tables import TableSpec, interval, num, pct

KIND = "edit"
TITLE = "Editing (paper Table 3): token selection vs embedding optimisation, final step"
USES_JUDGES = True  # takes judge_weights
METHODS = ("embedding", "token")
REGION_KINDS = ("fixed", "saliency", "oracle")
ORACLE = "oracle"  # the region kind that uses ground truth: an upper bound, never the headline
WORLD_SPLIT = "edit"  # mini-world split of the sources (tune_edit.py uses 'test', training others)
GENERATED_SPLIT = "test"  # split of generated sources (the paper's test images)
DETERMINISTIC = ("embedding",)  # methods that draw no random numbers from the source init


@dataclass
class EditEvalSettings:
    """What `cortex eval edit` measures."""

    images_per_direction: int = 10  # source images per (source -> target) direction (seeds first_seed .. first_seed+n-1)
    opt_seeds: int = 3  # optimiser seeds per source, region and method
    steps: int = 150  # optimisation steps (cortex edit's default is 3000; the final step is scored)
    seed: int = 0  # this run's randomness: optimiser seeds, saliency noise, bootstrap
    first_seed: int = 0  # the first source image seed
    pairs: tuple[tuple[str, str], ...] = ()  # (a, b) class specs; empty: the mini world's concept pairs
    region: str | None = None  # the fixed box (default: the centre (m/4) x (m/4) window)
    # region kinds; ('all',): fixed, saliency and (mini world) oracle. The default is the paper's
    # protocol alone: each kind costs ~5 min on 2 CPU cores at the default sizes (see the docstring)
    regions: tuple[str, ...] = ("fixed",)
    methods: tuple[str, ...] = METHODS
    samples: int = 20  # SmoothGrad samples N of the saliency box
    bootstrap: int = 2000  # bootstrap resamples of the token - embedding intervals
    batch_size: int = 64  # edits optimised together
    realism_images: int = 16  # generated train images per target class in its prior-NLL range (0: no realism)


SETTINGS = EditEvalSettings


def presets(quick: bool) -> dict[str, EditEvalSettings]:
    """The run of `cortex eval all`: every region kind (the paper's fixed box, the saliency box and the oracle, reported
    apart) at the default sizes, or its quick test's: one source per direction, a few steps, a two-image realism range."""
    if not quick:
        return {KIND: EditEvalSettings(regions=("all",))}
    return {KIND: EditEvalSettings(images_per_direction=1, steps=4, regions=("all",), opt_seeds=1, bootstrap=50, realism_images=2)}


@dataclass
class EditSource:
    """One source image and the regions edited in it."""

    source: int  # class id
    target: int
    key: str  # identity: world:<split>:<seed>:<class>, or the generated image's image_key
    image_seed: int
    regions: dict[str, str]  # 'fixed', 'oracle', 'saliency/<extractor>' -> R0:R1,C0:C1


@dataclass
class EditRow:
    """Table 3 numbers of one judge x extractor x region kind x method, over all sources and seeds."""

    judge: str
    extractor: str
    region: str
    method: str
    oracle: bool  # True: the ground-truth part box, an upper bound, not the paper's protocol
    effect: EditEffect


@dataclass
class EditComparison:
    """Token selection - embedding optimisation of one judge x extractor x region kind."""

    judge: str
    extractor: str
    region: str
    oracle: bool
    delta_p_targ: BootstrapCI  # token - embedding of ΔP_targ (higher is better)
    delta_p_orig: BootstrapCI  # token - embedding of ΔP_orig (lower is better)
    verdict: str  # on ΔP_targ: win / loss / n.s.
    orig_verdict: str  # on ΔP_orig: win (interval below 0) / loss / n.s.


@dataclass
class RealismRow:
    """Prior NLL of the edited grids of one extractor x region kind x method (under each edit's target class)."""

    extractor: str
    region: str
    method: str
    oracle: bool
    n_edits: int
    mean_nll: float
    adversarial_share: float  # edits above their target's generated threshold (`realism.flag`)
    mean_delta_nll: float = float("nan")  # edited - unedited source, both under the target (paired; seeds averaged per source)


@dataclass
class RealismComparison:
    """Token selection - embedding optimisation of the edits' NLL rise over their sources (lower: more natural)."""

    extractor: str
    region: str
    oracle: bool
    delta_nll: BootstrapCI  # paired over sources (seeds averaged), resampled by source
    verdict: str  # 'win': token selection's grids are likelier (interval below 0); 'loss'; 'n.s.'


@dataclass
class EditRealism:
    """The edits' prior NLL beside the generated range of their target classes, and beside their own sources."""

    margin: float  # realism.MARGIN: threshold = p95 + margin x (p95 - p5)
    images_per_class: int
    source_mean_nll: float  # the unedited sources, under their edit targets
    generated: list[realism.GeneratedRange]  # one per target class
    rows: list[RealismRow]
    source_adversarial_share: float = float("nan")  # unedited sources already above their target's threshold
    comparisons: list[RealismComparison] = field(default_factory=list)  # token - embedding, per extractor x region


@dataclass(frozen=True)
class EditEvalResult(EvaluationResult):
    """Table 3: the judges on every edit, per extractor x region kind x method, token - embedding intervals, realism."""

    KIND: ClassVar[str] = KIND
    model: str
    n_sources: int  # source images (each edited per extractor x region x method x seed)
    opt_seeds: int
    judges: list[str]
    extractors: list[str]
    methods: list[str]
    regions: list[str]
    steps: int
    rows: list[EditRow]
    comparisons: list[EditComparison]  # empty unless both methods ran
    token_beats_embedding: dict[str, dict[str, dict[str, str]]]  # judge -> extractor -> region -> win/loss/n.s. (ΔP_targ)
    items: list[EditSource]
    seconds: float
    settings: dict = field(default_factory=dict)
    json_path: str = ""
    plot_path: str = ""
    evaluation_id: int = 0
    realism: EditRealism | None = None  # None: the backend has no prior NLL, or realism_images was 0


def edit_seed(model: str, source_key: str | int, target: int, region_kind: str, run_seed: int, index: int) -> int:
    """The optimiser seed of edit `index` of a source: identities only, never row ids."""
    return derive_seed("edit-eval", model, source_key, int(target), region_kind, int(run_seed), int(index))


def stream_key(source_key: str) -> int:
    """The integer random-stream key of a source: a generated image's image_key, or a hash of the world identity."""
    return int(source_key) if source_key.isdigit() else derive_seed(source_key)


def box_size(grid: int) -> int:
    """The paper's box side: m/4 (4 on a 16x16 grid)."""
    return max(1, grid // 4)


def fixed_box(grid: int, size: int | None = None) -> Region:
    """The centre size x size window (the paper's fixed box; it does not say where it lies)."""
    size = box_size(grid) if size is None else size
    lo = (grid - size) // 2
    return Region((lo, lo + size), (lo, lo + size))


def max_sum_window(scores: torch.Tensor, size: int) -> Region:
    """The size x size window with the highest summed score (first in raster order on ties)."""
    grid = scores.shape[-1]
    sums = F.avg_pool2d(scores.double().reshape(1, 1, grid, grid), size, stride=1)[0, 0]
    best = int(torch.argmax(sums.reshape(-1)))
    r0, c0 = divmod(best, sums.shape[-1])
    return Region((r0, r0 + size), (c0, c0 + size))


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


def _world_sources(model: ModelInfo, vqgm, pairs: list[tuple[int, int]], per_direction: int,
                   first_seed: int) -> tuple[list[EditSource], torch.Tensor]:
    size = box_size(model.grid)
    items, images = [], []
    for a, b in pairs:
        for src, tgt in ((a, b), (b, a)):
            for i in range(first_seed, first_seed + per_direction):
                s = world.sample(src, i, WORLD_SPLIT)
                images.append(torch.from_numpy(s.image).permute(2, 0, 1).float() / 127.5 - 1)
                oracle = window_around(s.part_mask if s.part_mask.any() else s.mask, model.grid, size)
                items.append(EditSource(src, tgt, f"world:{WORLD_SPLIT}:{i}:{src}", i, {ORACLE: str(oracle)}))
    tokens = torch.cat([vqgm.encode_images(torch.stack(images[j:j + 32]).to(vqgm.device)).cpu() for j in range(0, len(images), 32)])
    return items, tokens


def _generated_sources(store: Store, model: ModelInfo, pairs: list[tuple[int, int]], per_direction: int, first_seed: int,
                       device) -> tuple[list[EditSource], torch.Tensor]:
    by_id = {c.class_id: c for c in model_registry.classes(store, model)}
    items, ids = [], []
    for a, b in pairs:
        for src, tgt in ((a, b), (b, a)):
            gen = generate(store, model, by_id[src], per_direction, split=GENERATED_SPLIT, seed=first_seed, device=device)
            for i, image_id in enumerate(gen.image_ids, start=first_seed):
                key = image_key(model.name, src, GENERATED_SPLIT, i, gen.sampler)
                items.append(EditSource(src, tgt, str(key), i, {}))
                ids.append(image_id)
    return items, image_tokens(store, model, ids)


def _pairs(store: Store, model: ModelInfo, specs: Sequence[tuple[str, str]]) -> list[tuple[int, int]]:
    if specs:
        out = []
        for a, b in specs:
            ca, cb = model_registry.resolve_class(store, model, a), model_registry.resolve_class(store, model, b)
            if ca.class_id == cb.class_id:
                raise CortexError(f"pair {a}:{b} names the same class twice; give two different classes")
            out.append((ca.class_id, cb.class_id))
        return out
    if not model.is_mini:
        raise CortexError(f"model {model.name!r} has no built-in concept pairs; give --pairs A:B,C:D (class ids or names)")
    return world.concept_pairs()


def _region_kinds(settings: EditEvalSettings, world_sources: bool) -> list[str]:
    kinds = list(settings.regions)
    if kinds in ([], ["all"]):
        kinds = [k for k in REGION_KINDS if k != ORACLE or world_sources]
    bad = [k for k in kinds if k not in REGION_KINDS]
    if bad or len(set(kinds)) != len(kinds):
        raise CortexError(f"--regions must be 'all' or distinct kinds among {', '.join(REGION_KINDS)}, got {','.join(kinds)}")
    if ORACLE in kinds and not world_sources:
        raise CortexError("the oracle region needs ground-truth part masks, which only the mini world's own pairs have; "
                          "drop 'oracle' from --regions (or leave out --pairs on the mini model)")
    return [k for k in REGION_KINDS if k in kinds]


def _validate(settings: EditEvalSettings) -> None:
    if settings.images_per_direction < 1:
        raise CortexError(f"--images-per-direction must be >= 1, got {settings.images_per_direction}")
    if settings.opt_seeds < 1:
        raise CortexError(f"--opt-seeds must be >= 1, got {settings.opt_seeds}")
    bad = [m for m in settings.methods if m not in METHODS]
    if bad or not settings.methods:
        raise CortexError(f"--methods must be among {', '.join(METHODS)}, got {bad or 'none'}")
    if settings.bootstrap < 10:
        raise CortexError(f"--bootstrap must be >= 10 resamples, got {settings.bootstrap}")
    if settings.realism_images < 0 or settings.realism_images == 1:
        raise CortexError(f"--realism-images must be 0 (no realism table) or >= 2 (a range needs two images), got {settings.realism_images}")
    if settings.batch_size < 1:
        raise CortexError(f"batch size must be >= 1, got {settings.batch_size}")
    SaliencySettings(samples=settings.samples).validate()
    OptimizeSettings(steps=settings.steps).validate()


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
        settings: sources per direction, optimiser seeds, steps, seed, pairs, regions, methods.
        device: where models run.
        out_dir: where `edit.json`/`.png` go (default `$CORTEX_HOME/reports/<model>/`).
        judge_weights: extra directory of ImageNet judge weights.
        judges: judges to use instead of the model's (tests, custom judges).
        progress: progress(done, total, info=...) callback.

    Returns:
        EditEvalResult (also stored in the `evaluations` table).

    Raises:
        CortexError: bad settings, unknown classes or extractors, 'oracle' without ground truth.
    """
    _validate(settings)
    world_sources = model.is_mini and not settings.pairs
    kinds = _region_kinds(settings, world_sources)
    fixed = parse_region(settings.region, model.grid) if settings.region else fixed_box(model.grid)
    pairs = _pairs(store, model, settings.pairs)
    run = common.begin(store, model, extractors=extractors, classes=(), device=device, out_dir=out_dir, progress=progress,
                       judges=judges, judge_weights=judge_weights)
    if world_sources:
        items, source = _world_sources(model, run.vqgm, pairs, settings.images_per_direction, settings.first_seed)
    else:
        items, source = _generated_sources(store, model, pairs, settings.images_per_direction, settings.first_seed, device)
    for it in items:
        it.regions["fixed"] = str(fixed)
    before = judge_probabilities(run.judges, run.decode(source))
    targets = [it.target for it in items]
    # the prior NLL's conditions: class id -> class
    by_id = {c.class_id: c for c in model_registry.classes(store, model)} if settings.realism_images > 0 else {}
    after, nll = _edit_all(run, settings, items, source, kinds, by_id)
    rows, comparisons, beats = _summarise(model, settings, items, run.judges, run.extractors, kinds, before, after)
    realism_result = _realism(store, model, run.vqgm, settings, source, targets, by_id, nll, device) if settings.realism_images > 0 else None
    result = EditEvalResult(
        model=model.name, n_sources=len(items), opt_seeds=settings.opt_seeds, judges=[j.name for j in run.judges],
        extractors=[i.name for i in run.extractors], methods=list(settings.methods), regions=kinds, steps=settings.steps,
        rows=rows, comparisons=comparisons, token_beats_embedding=beats, items=items, seconds=0.0, settings=asdict(settings),
        realism=realism_result,
    )
    return common.finish(run, KIND, result, _plot(result, run.out / "edit.png"),
                         common.settings_params(settings, extractors, regions=",".join(kinds)))


run = run_edit_eval

Edits = dict[tuple[str, str, str], dict[str, torch.Tensor]]  # (extractor, region kind, method) -> judge -> (sources, seeds, C)


def _edit_all(run: common.Evaluation, settings: EditEvalSettings, items: list[EditSource], source: torch.Tensor, kinds: list[str],
              by_id: dict) -> tuple[Edits, dict[tuple[str, str, str], list[float] | None]]:
    """Every edit of every extractor, region kind and method: the judges' probabilities after it and, with `by_id`
    (class id -> class), each edited grid's prior NLL under its target."""
    n_src, n_seeds = len(items), settings.opt_seeds
    total = len(run.extractors) * len(kinds) * sum(n_src * (1 if m in DETERMINISTIC else n_seeds) for m in settings.methods)
    jobs = common.Jobs(total * settings.steps)
    after: Edits = {}
    nll: dict[tuple[str, str, str], list[float] | None] = {}
    for info in run.extractors:
        net = load_extractor(info, run.device)
        if "saliency" in kinds:
            sal = SaliencySettings(samples=settings.samples, seed=settings.seed)
            tsv = common.saliency_of(net, run.vqgm, source, [it.source for it in items], [stream_key(it.key) for it in items], sal)
            for it, scores in zip(items, tsv):
                it.regions[f"saliency/{info.name}"] = str(max_sum_window(scores, box_size(run.model.grid)))
        for kind in kinds:
            name = f"saliency/{info.name}" if kind == "saliency" else kind
            regions = [parse_region(it.regions[name], run.model.grid) for it in items]
            for method in settings.methods:
                reps = 1 if method in DETERMINISTIC else n_seeds
                edits = [(i, k) for i in range(n_src) for k in range(reps)]
                edited = _edited(run, net, settings, items, source, regions, kind, method, edits, jobs, f"{info.name} / {kind} / {method}")
                probs = judge_probabilities(run.judges, run.decode(edited))
                if by_id:
                    nll[(info.name, kind, method)] = realism.prior_nll_or_none(run.vqgm, edited, [by_id[items[i].target] for i, _ in edits])
                after[(info.name, kind, method)] = {j: p.reshape(n_src, reps, -1).expand(n_src, n_seeds, -1) for j, p in probs.items()}
    return after, nll


def _edited(run: common.Evaluation, net, settings: EditEvalSettings, items: list[EditSource], source: torch.Tensor,
            regions: list[Region], kind: str, method: str, edits: list[tuple[int, int]], jobs: common.Jobs, label: str) -> torch.Tensor:
    """The final token grids of `edits` ((source, seed index) pairs), `settings.batch_size` at a time (`optimize_batch`)."""
    opt = OptimizeSettings(steps=settings.steps, method=method)
    edited = []
    for lo in range(0, len(edits), settings.batch_size):
        chunk = edits[lo:lo + settings.batch_size]
        seeds = [edit_seed(run.model.name, items[i].key, items[i].target, kind, settings.seed, k) for i, k in chunk]
        edited.append(optimize_batch(
            net, run.vqgm.codebook, source[[i for i, _ in chunk]],
            torch.stack([regions[i].mask(run.model.grid) for i, _ in chunk]),
            [items[i].target for i, _ in chunk], seeds, opt,
        ).tokens)
        run.report(jobs.next(len(chunk) * settings.steps), jobs.total, label)
    return torch.cat(edited)


def _realism(store: Store, model: ModelInfo, vqgm, settings: EditEvalSettings, source: torch.Tensor, targets: list[int],
             by_id: dict, nll: dict[tuple[str, str, str], list[float] | None], device) -> EditRealism | None:
    """The edits' prior NLL per extractor x region x method, against their target classes' generated ranges (`by_id`: class id -> class)."""
    source_nll = realism.prior_nll_or_none(vqgm, source, [by_id[t] for t in targets])
    if source_nll is None or any(v is None for v in nll.values()):
        return None
    ranges = {t: realism.generated_range(store, model, by_id[t], settings.realism_images, device=device) for t in sorted(set(targets))}
    if any(r is None for r in ranges.values()):
        return None
    n_src = len(targets)
    source_values = torch.tensor(source_nll, dtype=torch.float64)
    rows, rises = [], {}
    for (extractor, kind, method), values in nll.items():
        reps = len(values) // n_src  # edits are ordered source-major: (source i, seed k)
        flags = [realism.flag(v, ranges[targets[j // reps]]) == realism.ADVERSARIAL for j, v in enumerate(values)]
        rise = torch.tensor(values, dtype=torch.float64).reshape(n_src, reps) - source_values[:, None]
        rises[(extractor, kind, method)] = rise
        rows.append(RealismRow(extractor, kind, method, kind == ORACLE, len(values), float(np.mean(values)), float(np.mean(flags)),
                               float(rise.mean(1).mean())))
    comparisons = []
    for (extractor, kind, method), rise in rises.items():
        other = rises.get((extractor, kind, "embedding"))
        if method != "token" or other is None:
            continue
        ci = paired_bootstrap_ci(rise.mean(1), other.mean(1), resamples=settings.bootstrap,  # seeds averaged per source
                                 seed=derive_seed("edit-eval-realism", model.name, extractor, kind, settings.seed))
        comparisons.append(RealismComparison(extractor, kind, kind == ORACLE, ci, verdict(ci, higher_is_better=False)))
    source_flags = [realism.flag(v, ranges[t]) == realism.ADVERSARIAL for v, t in zip(source_nll, targets)]
    return EditRealism(margin=realism.MARGIN, images_per_class=settings.realism_images, source_mean_nll=float(np.mean(source_nll)),
                       generated=list(ranges.values()), rows=rows, source_adversarial_share=float(np.mean(source_flags)),
                       comparisons=comparisons)

def _summarise(
    model: ModelInfo,
    settings: EditEvalSettings,
    items: list[EditSource],
    judge_list: Sequence,
    infos: Sequence,
    kinds: list[str],
    before: dict[str, torch.Tensor],
    after: dict[tuple[str, str, str], dict[str, torch.Tensor]],
) -> tuple[list[EditRow], list[EditComparison], dict[str, dict[str, dict[str, str]]]]:
    """Rows (means over sources x seeds), token - embedding bootstrap intervals and verdicts."""
    n_src, n_seeds = len(items), settings.opt_seeds
    orig = torch.tensor([it.source for it in items])
    targ = torch.tensor([it.target for it in items])
    rows: list[EditRow] = []
    comparisons: list[EditComparison] = []
    beats: dict[str, dict[str, dict[str, str]]] = {}
    for j in judge_list:
        b = before[j.name].repeat_interleave(n_seeds, dim=0)
        for info in infos:
            for kind in kinds:
                per_method = {}
                for method in settings.methods:
                    a = after[(info.name, kind, method)][j.name]  # (sources, seeds, C)
                    effect = edit_effect(b, a.reshape(n_src * n_seeds, -1), orig.repeat_interleave(n_seeds), targ.repeat_interleave(n_seeds))
                    rows.append(EditRow(j.name, info.name, kind, method, kind == ORACLE, effect))
                    per_method[method] = a
                if not set(METHODS) <= set(per_method):
                    continue
                cis = {}
                for metric, label in (("delta_p_targ", targ), ("delta_p_orig", orig)):
                    pick = label[:, None, None].expand(n_src, n_seeds, 1)
                    # P(label | before) cancels in (token after - before) - (embedding after - before)
                    cis[metric] = paired_bootstrap_ci(
                        per_method["token"].gather(2, pick)[..., 0], per_method["embedding"].gather(2, pick)[..., 0],
                        resamples=settings.bootstrap,
                        seed=derive_seed("edit-eval-bootstrap", model.name, j.name, info.name, kind, metric, settings.seed),
                    )
                v = verdict(cis["delta_p_targ"], higher_is_better=True)
                comparisons.append(EditComparison(j.name, info.name, kind, kind == ORACLE, cis["delta_p_targ"], cis["delta_p_orig"],
                                                  v, verdict(cis["delta_p_orig"], higher_is_better=False)))
                beats.setdefault(j.name, {}).setdefault(info.name, {})[kind] = v
    return rows, comparisons, beats


def _plot(result: EditEvalResult, path: Path) -> Path:
    """token - embedding with 95% intervals (or the methods' means when only one ran), per judge/extractor/region."""
    if result.comparisons:
        plt = plots._pyplot()
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), squeeze=False)
        labels = [f"{c.judge} {c.extractor.upper()} {c.region}{'*' if c.oracle else ''}" for c in result.comparisons]
        for ax, metric, name in zip(axes[0], ("delta_p_targ", "delta_p_orig"), ("ΔP_targ (token better above 0)", "ΔP_orig (token better below 0)")):
            for x, c in enumerate(result.comparisons):
                ci: BootstrapCI = getattr(c, metric)
                ax.errorbar([x], [ci.mean], yerr=[[ci.mean - ci.low], [ci.high - ci.mean]], fmt="o", capsize=3,
                            color="0.55" if c.oracle else "C0", mfc="white" if c.oracle else "C0")
            ax.axhline(0, color="black", linewidth=0.6)
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels(labels, fontsize=7, rotation=30, ha="right")
            ax.set_title(f"token - embedding: {name}", fontsize=9)
            ax.grid(alpha=0.3, axis="y")
        fig.suptitle(f"{result.model}: {result.n_sources} sources x {result.opt_seeds} seeds, {result.steps} steps, "
                     f"95% paired bootstrap over sources (* oracle: GT box, upper bound)", fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path
    cats = [f"{r.judge} {r.extractor.upper()} {r.region}{'*' if r.oracle else ''}" for r in result.rows if r.method == result.methods[0]]
    return plots.bar_panels(
        cats,
        {"ΔP_orig (lower is better)": {m: [r.effect.delta_p_orig for r in result.rows if r.method == m] for m in result.methods},
         "ΔP_targ (higher is better)": {m: [r.effect.delta_p_targ for r in result.rows if r.method == m] for m in result.methods}},
        path, ylabel="change in judge probability", title=f"{result.model}: edits toward the paired concept (* oracle)",
    )


# -- tables (`cortex report`, the terminal, the atlas) -----------------------------------------------------------

def tables(r: dict) -> list[TableSpec]:
    """Before-numbers, the paper-protocol rows, the oracle rows apart, and token - embedding intervals."""
    if "rows" not in r:  # stored before the region kinds and intervals (one GT-centred box, no CI)
        return _edit_tables_v1(r)
    n, k = r["n_sources"], r["opt_seeds"]
    before: dict[str, list[str]] = {}
    for row in r["rows"]:
        e = row["effect"]
        before.setdefault(row["judge"], [row["judge"], pct(e["acc_orig"]), num(e["p_orig"]), num(e["p_targ"])])
    out = [TableSpec(f"before editing: judges on the {n} source images", ["judge", "Acc_orig", "P_orig", "P_targ"], list(before.values()))]
    columns = ["judge", "extr.", "region", "method", "ΔP_orig", "ΔP_targ", "Acc_targ"]

    def cells(row: dict) -> list[str]:
        e = row["effect"]
        return [row["judge"], row["extractor"].upper(), row["region"], row["method"], num(e["delta_p_orig"]),
                num(e["delta_p_targ"]), pct(e["acc_targ_after"])]

    main = [cells(row) for row in r["rows"] if not row["oracle"]]
    oracle = [cells(row) for row in r["rows"] if row["oracle"]]
    if main:
        out.append(TableSpec(f"after step {r['steps']} (final), mean of {n} sources x {k} seeds; boxes (m/4)^2: "
                             "fixed = centre (paper), saliency = max summed TSV", columns, main))
    if oracle:
        out.append(TableSpec("ORACLE, an upper bound, not the paper's protocol: box centred on the ground-truth part",
                             columns, oracle))
    for metric, name, better in (("delta_p_targ", "ΔP_targ", "above"), ("delta_p_orig", "ΔP_orig", "below")):
        rows = [[c["judge"], c["extractor"].upper(), "oracle (UB)" if c["oracle"] else c["region"], f"{c[metric]['mean']:+.3f}",
                 interval(c[metric]), c["verdict"] if metric == "delta_p_targ" else c["orig_verdict"]] for c in r.get("comparisons", [])]
        if rows:
            out.append(TableSpec(f"token - embedding of {name}: paired bootstrap 95% CI over {n} sources (seeds averaged); "
                                 f"win = CI {better} 0", ["judge", "extr.", "region", "diff", "95% CI", "verdict"], rows))
    real = r.get("realism")
    if real and real.get("rows"):
        gen = real["generated"]
        span = (f"mean {num(sum(g['mean'] for g in gen) / len(gen))}, p5-p95 {num(min(g['p5'] for g in gen))}-"
                f"{num(max(g['p95'] for g in gen))}")
        rows = [[x["extractor"].upper(), "oracle (UB)" if x["oracle"] else x["region"], x["method"], str(x["n_edits"]),
                 num(x["mean_nll"]), f"{x['mean_delta_nll']:+.3f}" if "mean_delta_nll" in x else "n/a", pct(x["adversarial_share"])]
                for x in real["rows"]]
        sources = f"sources {num(real['source_mean_nll'])}" + (
            f", {pct(real['source_adversarial_share'])} of them already adversarial" if "source_adversarial_share" in real else "")
        out.append(TableSpec(
            f"realism: prior NLL per token under the target class ({sources}; generated {real['images_per_class']}/class: "
            f"{span}); rise = edit - its source; adversarial = above p95 + {real['margin']:g} x (p95 - p5)",
            ["extr.", "region", "method", "edits", "NLL", "rise", "adversarial"], rows))
        if real.get("comparisons"):
            n_boot = real["comparisons"][0]["delta_nll"]["resamples"]
            out.append(TableSpec(
                f"realism: token - embedding of the NLL rise, paired bootstrap 95% CI over {n} sources ({n_boot} resamples); "
                "win = CI below 0 (token selection's edits likelier under the prior)",
                ["extr.", "region", "diff", "95% CI", "verdict"],
                [[c["extractor"].upper(), "oracle (UB)" if c["oracle"] else c["region"], f"{c['delta_nll']['mean']:+.3f}",
                  interval(c["delta_nll"]), c["verdict"]] for c in real["comparisons"]]))
    return out


def _edit_tables_v1(r: dict) -> list[TableSpec]:
    rows = []
    columns: list[str] = []
    for judge, cells in r["table"].items():
        columns = list(cells)
        first = next(iter(cells.values()))
        rows.append([judge, pct(first["acc_orig"]), num(first["p_orig"]), num(first["p_targ"])]
                    + [f"{num(cells[c]['delta_p_orig'])} / {num(cells[c]['delta_p_targ'])}" for c in columns])
    label = {c: f"{c.split('/')[0]} {c.split('/')[1].upper()} ΔP_orig / ΔP_targ" for c in columns}
    return [TableSpec(f"{r['n_edits']} source images, {r['steps']} steps (final step scored; GT-centred box, no intervals)",
                      ["judge", "Acc_orig", "P_orig", "P_targ"] + [label[c] for c in columns], rows)]
