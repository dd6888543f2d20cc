"""Stability of the saliency ranking: does the top-n survive another seed, another N, bf16?

For the same generated test images and target (the true class):
- across seeds: mean pairwise top-n overlap of the TSV maps of several noise seeds, for each N;
- across N: top-n overlap of each N's map (first seed) with the largest N's map of the second seed;
- precision: top-n overlap of fp32 and bf16 (autocast) maps at the default N and seed (the same
  noise, so only the arithmetic differs), next to the median relative TSV gap at the top-n cut.
A top-n overlap of 1.0 means the same n positions were chosen.

Every (N, seed) map draws its own noise, keyed by (N, seed, image identity): N = 20's copies are
not the first 20 of N = 50's, so no comparison shares noise and agreement is not overstated.
bf16 flips a ranking where two TSVs differ by less than its rounding (about 2^-8 relative); the
gap column says how often a trained extractor's maps come that close, which random-weight
benchmarks (bench_saliency.py) cannot tell.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

import torch

from ..core.errors import CortexError
from .common import EvaluationResult
from ..extractors.registry import load_extractor
from ..images.generation import image_keys
from ..models.registry import ModelInfo
from ..attribution import SaliencySettings
from ..core.seeding import derive_seed
from ..store.database import Store
from . import common, plots
from .metrics import mean, top_n_overlap
from .tables import TableSpec, num

KIND = "stability"
TITLE = "Stability: top-n overlap of saliency maps"
USES_JUDGES = False


def noise_seed(samples: int, seed: int) -> int:
    """The saliency seed of the (N, seed) map: independent noise for every N and seed."""
    return derive_seed("stability", samples, seed)


def median_gap(maps: torch.Tensor, n: int) -> float:
    """Median over images of the relative TSV gap between ranks n and n+1 (how close a flip is)."""
    flat = maps.reshape(maps.shape[0], -1).float()
    if n >= flat.shape[1]:
        return float("nan")
    top = flat.sort(dim=1, descending=True).values
    gap = (top[:, n - 1] - top[:, n]) / top[:, n - 1].clamp_min(1e-30)
    return round(float(gap.median()), 6)


@dataclass
class StabilitySettings:
    """What `cortex eval stability` measures."""

    images_per_class: int = 2
    seeds: tuple[int, ...] = (0, 1, 2)  # noise seeds compared pairwise (the command's randomness)
    sample_counts: tuple[int, ...] = (5, 10, 20, 50)  # SmoothGrad N
    ns: tuple[int, ...] = (5, 10, 20)  # top-n sizes compared
    default_samples: int = 20  # N of the fp32-vs-bf16 comparison
    first_seed: int = 0  # test images: seeds first_seed .. first_seed+images_per_class-1
    classes: tuple[str, ...] = ()
    batch_size: int = 16


SETTINGS = StabilitySettings


def presets(quick: bool) -> dict[str, StabilitySettings]:
    """The run of `cortex eval all`: the defaults, or its quick test's tiny settings."""
    if not quick:
        return {KIND: StabilitySettings()}
    return {KIND: StabilitySettings(images_per_class=1, seeds=(0, 1), sample_counts=(2, 4), ns=(5,), default_samples=2,
                                    classes=common.QUICK_CLASSES)}


@dataclass
class ExtractorStability:
    across_seeds: dict[str, dict[str, float]]  # str(N) -> str(n) -> mean pairwise overlap between seeds
    vs_largest_n: dict[str, dict[str, float]]  # str(N) -> str(n) -> overlap with an independent largest-N map
    fp32_vs_bf16: dict[str, float]  # str(n) -> overlap at default_samples, first seed
    rank_gap: dict[str, float] = field(default_factory=dict)  # str(n) -> median (tsv[n-1] - tsv[n]) / tsv[n-1], fp32


@dataclass(frozen=True)
class StabilityResult(EvaluationResult):
    """Top-n overlaps of each extractor's maps across seeds, N and precision."""

    KIND: ClassVar[str] = KIND
    model: str
    n_images: int
    extractors: dict[str, ExtractorStability]
    seconds: float
    settings: dict = field(default_factory=dict)
    json_path: str = ""
    plot_path: str = ""
    evaluation_id: int = 0


def mean_overlap(maps_a: torch.Tensor, maps_b: torch.Tensor, n: int) -> float:
    """Mean top-n overlap of paired (B, m, m) maps."""
    return mean([top_n_overlap(a, b, n) for a, b in zip(maps_a, maps_b)])


def run_stability(
    store: Store,
    model: ModelInfo,
    *,
    extractors: str = "all",
    settings: StabilitySettings = StabilitySettings(),
    device: torch.device | str = "cpu",
    out_dir: str | Path | None = None,
    progress: common.Progress | None = None,
) -> StabilityResult:
    """Run the stability evaluation, write JSON + PNG, and store the result.

    Args:
        store: the open database.
        model: the model whose generated test images are explained.
        extractors: 'all' or comma-separated extractor names.
        settings: seeds, sample counts N, top-n sizes, images.
        device: where models run.
        out_dir: where `stability.json`/`.png` go (default `$CORTEX_HOME/reports/<model>/`).
        progress: progress(done, total, info=...) callback.

    Returns:
        StabilityResult (also stored in the `evaluations` table).
    """
    _validate(settings, model)
    run = common.begin(store, model, extractors=extractors, classes=settings.classes, device=device, out_dir=out_dir,
                       progress=progress, with_judges=False)
    ids, labels, tokens = common.test_images(store, model, run.classes, settings.images_per_class, seed=settings.first_seed, device=device)
    keys = image_keys(store, model, ids)
    counts = sorted(set(settings.sample_counts))
    jobs = common.Jobs(len(run.extractors) * (len(settings.seeds) * len(counts) + 1))
    per_extractor = {}
    for info in run.extractors:
        net = load_extractor(info, device)

        def tsv(samples: int, seed: int, precision: str = "fp32") -> torch.Tensor:
            s = SaliencySettings(samples=samples, seed=noise_seed(samples, seed), precision=precision)
            maps = common.saliency_of(net, run.vqgm, tokens, labels.tolist(), keys, s, batch_size=settings.batch_size)
            run.report(jobs.next(), jobs.total, f"{info.name} N={samples} seed={seed} {precision}")
            return maps

        per_extractor[info.name] = _stability_of(tsv, settings, counts)
    result = StabilityResult(model=model.name, n_images=len(ids), extractors=per_extractor, seconds=0.0, settings=asdict(settings))
    return common.finish(run, KIND, result, _plot(result, settings, counts, run.out / "stability.png"), common.settings_params(settings, extractors))


run = run_stability


def _validate(settings: StabilitySettings, model: ModelInfo) -> None:
    if len(settings.seeds) < 2:
        raise CortexError(f"--noise-seeds needs at least two seeds to compare, got {list(settings.seeds)}")
    if not settings.sample_counts or min(settings.sample_counts) < 1:
        raise CortexError(f"--sample-counts must be positive numbers, got {list(settings.sample_counts)}")
    if not settings.ns or any(not 0 < n <= model.grid ** 2 for n in settings.ns):
        raise CortexError(f"n values must lie in 1..{model.grid ** 2}, got {list(settings.ns)}")


def _stability_of(tsv: Callable[..., torch.Tensor], settings: StabilitySettings, counts: list[int]) -> ExtractorStability:
    """One extractor's overlaps from its maps `tsv(N, seed[, precision])`: every (N, seed), then fp32 vs bf16."""
    maps = {(n_s, seed): tsv(n_s, seed) for n_s in counts for seed in settings.seeds}
    first, second, largest = settings.seeds[0], settings.seeds[1], counts[-1]
    across = {
        str(n_s): {
            str(n): mean([mean_overlap(maps[(n_s, a)], maps[(n_s, b)], n) for a, b in itertools.combinations(settings.seeds, 2)])
            for n in settings.ns
        }
        for n_s in counts
    }
    vs_largest = {str(n_s): {str(n): mean_overlap(maps[(n_s, first)], maps[(largest, second)], n) for n in settings.ns} for n_s in counts}
    default = settings.default_samples
    fp32 = maps.get((default, first))
    if fp32 is None:
        fp32 = tsv(default, first)
    bf16 = tsv(default, first, "bf16")
    return ExtractorStability(
        across, vs_largest, {str(n): mean_overlap(fp32, bf16, n) for n in settings.ns},
        {str(n): median_gap(fp32, n) for n in settings.ns},
    )


def _plot(result: StabilityResult, settings: StabilitySettings, counts: list[int], path: Path) -> Path:
    """Top-n overlap between seeds against N, one panel per extractor."""
    panels = {
        f"{name.upper()}: across seeds": {f"top-{n}": [st.across_seeds[str(c)][str(n)] for c in counts] for n in settings.ns}
        for name, st in result.extractors.items()
    }
    return plots.line_panels(
        counts, panels, path, xlabel="SmoothGrad samples N", ylabel="top-n overlap between seeds",
        title=f"{result.model}: saliency stability ({result.n_images} images, seeds {list(settings.seeds)})",
    )


# -- tables (`cortex report`, the terminal, the atlas) -----------------------------------------------------------

def tables(r: dict) -> list[TableSpec]:
    """The tables of a stored result (its JSON form)."""
    rows = []
    ns: list[str] = []
    for name, st in r["extractors"].items():
        for n_s, cells in st["across_seeds"].items():
            ns = list(cells)
            rows.append([name.upper(), f"N={n_s}", "seeds (pairwise)"] + [num(cells[n]) for n in ns])
            rows.append([name.upper(), f"N={n_s}", "vs largest N"] + [num(st["vs_largest_n"][n_s][n]) for n in ns])
        default = f"N={r['settings'].get('default_samples', 20)}"
        rows.append([name.upper(), default, "fp32 vs bf16"] + [num(st["fp32_vs_bf16"][n]) for n in ns])
        if st.get("rank_gap"):
            rows.append([name.upper(), default, "TSV gap at cut"] + [num(st["rank_gap"][n], 4) for n in ns])
    return [TableSpec(
        f"top-n overlap on {r['n_images']} images; every (N, seed) draws independent noise; 'vs largest N' compares "
        "with another seed's largest-N map; 'TSV gap at cut': median (TSV[n-1] - TSV[n]) / TSV[n-1] in fp32",
        ["extractor", "samples", "comparison"] + [f"top-{n}" for n in ns], rows)]
