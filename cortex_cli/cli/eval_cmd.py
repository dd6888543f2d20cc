"""`cortex eval ...` (the paper's Figure 3 and Tables 2-3, ground truth, stability) and `cortex report`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer

from .. import registry
from ..errors import CortexError
from .app import app, command, state, sub_command
from .render import console, print_json, progress, table

eval_app = typer.Typer(
    help="Evaluate explanations: masking (Figure 3, Table 2), editing (Table 3), ground truth, stability.\n\n"
    "Each command writes JSON + a PNG plot to --out, prints a table and stores the result for `cortex report`.",
    no_args_is_help=True,
)
app.add_typer(eval_app, name="eval")

OUT_HELP = "Directory for the JSON and PNG (default: $CORTEX_HOME/reports/<model>/)."
EXTRACTOR_HELP = "Extractor name(s), comma-separated, or 'all' (the mini model: ce and re)."
CLASSES_HELP = "Comma-separated class ids or names (default: every class of the model)."
WEIGHTS_HELP = "Directory with torchvision's ImageNet judge weights (.pth) if not in the torch hub cache."


def _classes(text: str | None) -> tuple[str, ...]:
    return tuple(c.strip() for c in text.split(",") if c.strip()) if text else ()


def _ints(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise CortexError(f"{option} must be comma-separated integers, e.g. 5,10,20; got {text!r}") from None
    if not values:
        raise CortexError(f"{option} needs at least one number")
    return values


def _methods(spec: str) -> tuple[str, ...]:
    """'smoothgrad,gradient' or 'all' -> attribution method names (checked by the settings' validate)."""
    from ..attribution import METHODS

    if spec.strip() == "all":
        return tuple(METHODS)
    return tuple(dict.fromkeys(m.strip() for m in spec.split(",") if m.strip()))


def _precheck(store, info, extractor: str) -> None:
    """Fail on unknown extractors before any progress bar is drawn."""
    from ..evaluation.common import resolve_extractors

    resolve_extractors(store, info, extractor)


def _render(kind: str, result, as_json: bool) -> None:
    from ..evaluation.common import result_payload
    from ..evaluation.report import tables_for

    if as_json:  # the reproducible part only: the same command prints the same bytes in any home
        print_json(result_payload(result))
        return
    data = asdict(result)
    for spec in tables_for(kind, data):
        table(spec.title, spec.columns, spec.rows)
    console.print(f"{result.seconds:.1f} s; wrote {result.json_path} and {result.plot_path} (evaluation #{result.evaluation_id})",
                  highlight=False, soft_wrap=True)


@sub_command(eval_app, "image-level")
def image_level(
    ctx: typer.Context,
    model: str = typer.Option(None, "--model", "-m", help="Registered model (default: mini)."),
    extractor: str = typer.Option("all", "--extractor", "-x", help=EXTRACTOR_HELP),
    images_per_class: int = typer.Option(4, "--images-per-class", help="Generated test images per class."),
    fill: str = typer.Option("black", "--fill", help="Patch fill: black (the paper's), mean or blur."),
    random_draws: int = typer.Option(3, "--random-draws", help="Seeded random-position draws per image (the floor)."),
    ns: str = typer.Option("5,10,15,20,25,30,35,40,45,50", "--ns", help="Numbers of masked tokens."),
    samples: int = typer.Option(20, "--samples", help="SmoothGrad samples N."),
    method: str = typer.Option("smoothgrad", "--method", help="Attribution method(s) to compare on the same images, comma-separated or 'all': "
                               "smoothgrad, gradient, gradient-x-input, integrated-gradients (zeros baseline, 50 steps); one curve per extractor and method."),
    classes: str = typer.Option(None, "--classes", help=CLASSES_HELP),
    judge_weights: Path = typer.Option(None, "--judge-weights", help=WEIGHTS_HELP),
    out: Path = typer.Option(None, "--out", "-o", help=OUT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON (no progress bar)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Figure 3: judges' mean P(true class) as the top-n TSV tokens' patches are masked, vs n random ones.

    On generated test images (sampled if missing), each extractor's TSV map ranks the positions;
    the pixel patches of the top n (5, 10, ..., 50) are filled and the judges score the image; the
    same n at seeded random positions (the same draws for every extractor) is the floor.
    Defaults take a few minutes on 2 CPU cores for the mini model.

    Example: cortex eval image-level --model mini --images-per-class 4 --fill black
    Example: cortex eval image-level --model mini --method smoothgrad,gradient,gradient-x-input
    """
    from ..evaluation.image_level import ImageLevelSettings, run_image_level

    st = state(ctx)
    store = st.store()
    info = registry.get_model(store, model)
    settings = ImageLevelSettings(images_per_class=images_per_class, ns=_ints(ns, "--ns"), fill=fill, random_draws=random_draws,
                                  seed=st.seed, classes=_classes(classes), samples=samples, methods=_methods(method))
    settings.validate(info.grid)
    _precheck(store, info, extractor)
    with progress("image-level", quiet=quiet or as_json) as update:
        result = run_image_level(store, info, extractors=extractor, settings=settings, device=st.torch_device(), out_dir=out,
                                 judge_weights=judge_weights, progress=update)
    _render("image-level", result, as_json)


@sub_command(eval_app, "concept-level")
def concept_level(
    ctx: typer.Context,
    model: str = typer.Option(None, "--model", "-m", help="Registered model (default: mini)."),
    extractor: str = typer.Option("all", "--extractor", "-x", help=EXTRACTOR_HELP),
    k: int = typer.Option(None, "-k", help="Tokens per concept (default: 100 as the paper; K/16 for codebooks under 1600 tokens (8 for the mini model))."),
    top_n: int = typer.Option(20, "--top-n", help="Per-image top-n TSV tokens of the index (the paper's 20)."),
    train_images: int = typer.Option(20, "--train-images", help="Indexed training images per class (indexed now if missing)."),
    images_per_class: int = typer.Option(4, "--images-per-class", help="Masked test images per class."),
    fill: str = typer.Option("black", "--fill", help="Patch fill: black, mean or blur."),
    samples: int = typer.Option(20, "--samples", help="SmoothGrad samples N of the index."),
    classes: str = typer.Option(None, "--classes", help=CLASSES_HELP),
    judge_weights: Path = typer.Option(None, "--judge-weights", help=WEIGHTS_HELP),
    out: Path = typer.Option(None, "--out", "-o", help=OUT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON (no progress bar)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Table 2: mask every position whose token is in T*_concept; Acc, P, ΔA, ΔP and mean n per judge.

    T*_concept: the k tokens most frequent in the top-n TSV sets of the class's indexed training
    images (indexed first if needed); the frequency baseline: the k most frequent tokens of the
    class's training images. Also the baseline cut to CORTEX's n per image (a fairer comparison).

    Example: cortex eval concept-level --model mini --train-images 20 --images-per-class 4
    """
    from ..evaluation.concept_level import ConceptLevelSettings, run_concept_level

    st = state(ctx)
    store = st.store()
    info = registry.get_model(store, model)
    settings = ConceptLevelSettings(k=k, top_n=top_n, train_images=train_images, images_per_class=images_per_class, fill=fill,
                                    seed=st.seed, samples=samples, classes=_classes(classes))
    _precheck(store, info, extractor)
    with progress("concept-level", quiet=quiet or as_json) as update:
        result = run_concept_level(store, info, extractors=extractor, settings=settings, device=st.torch_device(), out_dir=out,
                                   judge_weights=judge_weights, progress=update)
    _render("concept-level", result, as_json)


@sub_command(eval_app, "edit")
def edit(
    ctx: typer.Context,
    model: str = typer.Option(None, "--model", "-m", help="Registered model (default: mini)."),
    extractor: str = typer.Option("all", "--extractor", "-x", help=EXTRACTOR_HELP),
    images_per_direction: int = typer.Option(10, "--images-per-direction", help="Source images per (source -> target) direction (image seeds 0..n-1)."),
    opt_seeds: int = typer.Option(3, "--opt-seeds", help="Optimiser seeds per source, region and method (the embedding baseline draws no noise: run once)."),
    steps: int = typer.Option(150, "--steps", help="Optimisation steps per edit (the final step is scored; `cortex edit` uses 3000)."),
    regions: str = typer.Option("fixed", "--regions", help="Region kinds, comma-separated: fixed, saliency, oracle, or 'all' (oracle needs the mini world's masks)."),
    pairs: str = typer.Option(None, "--pairs", help="Concept pairs A:B,C:D (ids or names) (default for mini: the world's 4 part pairs)."),
    region: str = typer.Option(None, "--region", help="The fixed box R0:R1,C0:C1 (default: the centre (m/4)x(m/4) window, 6:10,6:10 on 16x16)."),
    samples: int = typer.Option(20, "--samples", help="SmoothGrad samples N of the saliency box."),
    bootstrap: int = typer.Option(2000, "--bootstrap", help="Bootstrap resamples of the token - embedding 95% intervals."),
    judge_weights: Path = typer.Option(None, "--judge-weights", help=WEIGHTS_HELP),
    out: Path = typer.Option(None, "--out", "-o", help=OUT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON (no progress bar)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Table 3: token selection vs embedding optimisation toward the paired concept, scored by judges.

    Both directions of every pair; each source image is edited inside an (m/4)x(m/4) box of one of
    three kinds, each its own rows: 'fixed' (the paper's fixed 4x4 box; the paper does not say
    where, so the centre; the default), 'saliency' (the window of highest summed TSV of the source
    image for its own class, by the extractor being evaluated) and 'oracle' (centred on the
    ground-truth part, mini world only: an upper bound, not the paper's protocol). Reports Acc_orig,
    P_orig, P_targ before, ΔP_orig / ΔP_targ (eq. 10) and the judges' target accuracy at the final
    step, and the paired bootstrap 95% interval of token - embedding over sources: 'win' only where
    it excludes 0. --seed sets the optimiser seeds, saliency noise and bootstrap; the sources are
    image seeds 0..n-1. The defaults (80 sources x 3 seeds, fixed box, CE and RE) take about 5
    minutes on 2 CPU cores; every further region kind adds about as much.

    Example: cortex eval edit --model mini --regions all --opt-seeds 3
    """
    from ..evaluation.edit_eval import EditEvalSettings, run_edit_eval

    st = state(ctx)
    store = st.store()
    info = registry.get_model(store, model)
    pair_specs = []
    for item in (pairs or "").split(","):
        if not item.strip():
            continue
        a, sep, b = item.partition(":")
        if not sep or not a.strip() or not b.strip():
            raise CortexError(f"--pairs item {item!r} is not A:B (two class ids or names)")
        pair_specs.append((a.strip(), b.strip()))
    settings = EditEvalSettings(images_per_direction=images_per_direction, opt_seeds=opt_seeds, steps=steps, seed=st.seed,
                                pairs=tuple(pair_specs), region=region, regions=_classes(regions) or ("fixed",), samples=samples,
                                bootstrap=bootstrap)
    _precheck(store, info, extractor)
    with progress("edit", quiet=quiet or as_json) as update:
        result = run_edit_eval(store, info, extractors=extractor, settings=settings, device=st.torch_device(), out_dir=out,
                               judge_weights=judge_weights, progress=update)
    _render("edit", result, as_json)


@sub_command(eval_app, "localization")
def localization(
    ctx: typer.Context,
    model: str = typer.Option(None, "--model", "-m", help="The mini model (the only one with ground-truth masks) (default: mini)."),
    extractor: str = typer.Option("all", "--extractor", "-x", help=EXTRACTOR_HELP),
    images_per_class: int = typer.Option(5, "--images-per-class", help="Mini-world images per concept."),
    ns: str = typer.Option("1,5,10,20", "--ns", help="Top-n sizes."),
    random_draws: int = typer.Option(10, "--random-draws", help="Seeded random orders per image (the floor)."),
    samples: int = typer.Option(20, "--samples", help="SmoothGrad samples N."),
    classes: str = typer.Option(None, "--classes", help=CLASSES_HELP),
    out: Path = typer.Option(None, "--out", "-o", help=OUT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON (no progress bar)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Ground truth (mini world only): precision@n and pointing game of the top tokens on the object.

    Mini-world images with known object masks are encoded by the VQGAN; a token is on the object
    when >= 50% of its pixel patch is. Compared: each extractor's TSV ranking, the frequency
    baseline (positions by how common their token is in the class's generated training images)
    and random positions.

    Example: cortex eval localization --images-per-class 5
    """
    from ..evaluation.localization import LocalizationSettings, require_mini, run_localization

    st = state(ctx)
    store = st.store()
    info = registry.get_model(store, model)
    require_mini(info)
    _precheck(store, info, extractor)
    settings = LocalizationSettings(images_per_class=images_per_class, ns=_ints(ns, "--ns"), random_draws=random_draws, seed=st.seed,
                                    samples=samples, classes=_classes(classes))
    with progress("localization", quiet=quiet or as_json) as update:
        result = run_localization(store, info, extractors=extractor, settings=settings, device=st.torch_device(), out_dir=out, progress=update)
    _render("localization", result, as_json)


@sub_command(eval_app, "stability")
def stability(
    ctx: typer.Context,
    model: str = typer.Option(None, "--model", "-m", help="Registered model (default: mini)."),
    extractor: str = typer.Option("all", "--extractor", "-x", help=EXTRACTOR_HELP),
    images_per_class: int = typer.Option(2, "--images-per-class", help="Generated test images per class."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Noise seeds compared pairwise."),
    sample_counts: str = typer.Option("5,10,20,50", "--sample-counts", help="SmoothGrad N values."),
    ns: str = typer.Option("5,10,20", "--ns", help="Top-n sizes compared."),
    classes: str = typer.Option(None, "--classes", help=CLASSES_HELP),
    out: Path = typer.Option(None, "--out", "-o", help=OUT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON (no progress bar)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Stability: top-n overlap of saliency maps across noise seeds, across N, and fp32 vs bf16.

    Helps pick N with evidence: the overlap between seeds should approach 1 as N grows.

    Example: cortex eval stability --seeds 0,1,2 --sample-counts 5,10,20,50
    """
    from ..evaluation.stability import StabilitySettings, run_stability

    st = state(ctx)
    store = st.store()
    info = registry.get_model(store, model)
    settings = StabilitySettings(images_per_class=images_per_class, seeds=_ints(seeds, "--seeds"),
                                 sample_counts=_ints(sample_counts, "--sample-counts"), ns=_ints(ns, "--ns"),
                                 image_seed=st.seed, classes=_classes(classes))
    _precheck(store, info, extractor)
    with progress("stability", quiet=quiet or as_json) as update:
        result = run_stability(store, info, extractors=extractor, settings=settings, device=st.torch_device(), out_dir=out, progress=update)
    _render("stability", result, as_json)


@sub_command(eval_app, "all")
def eval_all(
    ctx: typer.Context,
    out: Path = typer.Option(Path("docs/eval"), "--out", "-o", help="Directory for every JSON, PNG, report.md and timings.json."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON (no progress bar)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Regenerate every committed evaluation result from nothing, on the bundled mini model.

    Runs localization, image-level, concept-level, edit and stability with their default settings
    in a fresh temporary store (your database is neither read nor changed), then writes report.md.
    Two runs give byte-identical JSON and report.md; only timings.json differs. About 15 minutes on
    2 CPU cores.

    Example: cortex eval all --out docs/eval
    """
    from ..evaluation.run_all import run_all
    from ..settings import writable_dir

    st = state(ctx)
    writable_dir(out, "to")  # fail before any progress is drawn
    with progress("eval all", quiet=quiet or as_json) as update:
        result = run_all(out, device=st.torch_device(), progress=update)
    if as_json:
        print_json(result)
        return
    console.print(f"wrote {result.report} and the JSON/PNG of {', '.join(result.kinds)} "
                  f"({sum(result.seconds.values()):.0f} s; per evaluation in timings.json)", highlight=False, soft_wrap=True)


@command("report")
def report(
    ctx: typer.Context,
    model: str = typer.Option(None, "--model", "-m", help="Registered model (default: mini)."),
    out: Path = typer.Option(None, "--out", "-o", help="Markdown file (default: $CORTEX_HOME/reports/<model>/report.md)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Gather the latest stored result of each `cortex eval` command into one Markdown file with plots.

    Nothing is recomputed: tables come from the stored JSON, plots are linked by relative path.

    Example: cortex report --model mini --out README-results.md
    """
    from ..evaluation.report import write_report

    st = state(ctx)
    store = st.store()
    info = registry.get_model(store, model)
    result = write_report(store, info, out)
    if as_json:
        print_json(result)
        return
    console.print(f"wrote {result.path} ({', '.join(result.kinds)})", highlight=False, soft_wrap=True)
    if result.missing:
        console.print(f"not run yet: {', '.join(result.missing)}", highlight=False, soft_wrap=True)
