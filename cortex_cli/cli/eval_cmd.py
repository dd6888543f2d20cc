"""`cortex eval ...` (the paper's Figure 3 and Tables 2-3, ground truth, stability) and `cortex report`."""

from __future__ import annotations

import functools
import inspect
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from ..attribution import METHODS
from ..core.errors import CortexError
from ..evaluation.concept_level import ConceptLevelSettings
from ..evaluation.edit_eval import EditEvalSettings
from ..evaluation.image_level import ImageLevelSettings
from ..evaluation.localization import LocalizationSettings
from ..evaluation.registry import evaluation_named
from ..evaluation.sanity import SanitySettings
from ..evaluation.stability import StabilitySettings
from .app import app, command, sub_command, workspace
from .options import AsJson, ConceptScoreRule, EvalClasses, EvalOut, Extractors, Fill, FirstSeed, ImagesPerClass, JudgeWeights, Model, Ns, Quiet, RandomDraws, Samples, Seed, Steps, TopN
from .render import console, deferred_progress, print_json, table

eval_app = typer.Typer(
    help="Evaluate explanations: masking (Figure 3, Table 2), editing (Table 3), ground truth, stability.\n\n"
    "Each command writes JSON + a PNG plot to --out, prints a table and stores the result for `cortex report`.",
    no_args_is_help=True,
)
app.add_typer(eval_app, name="eval")

IMAGE_LEVEL, CONCEPT_LEVEL, EDIT = ImageLevelSettings(), ConceptLevelSettings(), EditEvalSettings()
LOCALIZATION, STABILITY, SANITY = LocalizationSettings(), StabilitySettings(), SanitySettings()


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(c.strip() for c in text.split(",") if c.strip()) if text else ()


def _ints(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise CortexError(f"{option} must be comma-separated integers, e.g. 5,10,20; got {text!r}") from None
    if not values:
        raise CortexError(f"{option} needs at least one number")
    return values


def _csv(values) -> str:
    """A tuple default as the comma-separated text the option takes."""
    return ",".join(str(v) for v in values)


def _methods(spec: str) -> tuple[str, ...]:
    """'smoothgrad,gradient' or 'all' -> attribution method names (checked by the settings' validate)."""
    if spec.strip() == "all":
        return tuple(METHODS)
    return tuple(dict.fromkeys(m.strip() for m in spec.split(",") if m.strip()))


def _pairs(text: str | None) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in _names(text):
        a, sep, b = item.partition(":")
        if not sep or not a.strip() or not b.strip():
            raise CortexError(f"--pairs item {item!r} is not A:B (two class ids or names)")
        pairs.append((a.strip(), b.strip()))
    return tuple(pairs)


# how a command's option becomes its evaluation's setting: the parser of its text (others pass as they are) and the
# setting's name where it differs from the option's (`cortex eval stability --noise-seeds` sets `seeds`)
PARSED = {"ns": lambda text: _ints(text, "--ns"), "noise_seeds": lambda text: _ints(text, "--noise-seeds"),
          "sample_counts": lambda text: _ints(text, "--sample-counts"), "classes": _names, "method": _methods, "pairs": _pairs,
          "regions": lambda text: _names(text) or EDIT.regions}
FIELDS = {"method": "methods", "noise_seeds": "seeds", "permuted_images": "permuted_per_class"}


def _option(name: str, annotation: Any, default: Any = inspect.Parameter.empty) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation)


# the options of every `cortex eval <kind>` command that are the run's, not its evaluation's settings: the first and
# the last ones of each command (a command may declare its own --model and --extractor, with their own help)
RUN_HEAD = (_option("ctx", typer.Context), _option("model", Model, None), _option("extractor", Extractors, "all"))
RUN_TAIL = (_option("out", EvalOut, None), _option("as_json", AsJson, False), _option("quiet", Quiet, False))
RUN_OPTIONS = {p.name for p in RUN_HEAD + RUN_TAIL} | {"judge_weights"}  # judge weights: the evaluations that have judges


def eval_command(kind: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """`cortex eval <kind>`: the decorated function declares the command's help (its docstring) and its own options
    (its signature: the settings, and --model/--extractor where its help differs); the run's options (`RUN_HEAD`,
    `RUN_TAIL`) come first and last. Running the command runs the evaluation with them (`_evaluate`)."""

    def decorator(declared: Callable[..., None]) -> Callable[..., None]:
        own = inspect.signature(declared, eval_str=True).parameters
        params = ([own.get(p.name, p) for p in RUN_HEAD] + [p for name, p in own.items() if name not in ("model", "extractor")]
                  + list(RUN_TAIL))

        @functools.wraps(declared)
        def evaluate(**options: Any) -> None:
            _evaluate(kind, {p.name: options[p.name] for p in params})  # in the declared order, not the typed one

        evaluate.__signature__ = inspect.Signature(params)  # what Typer reads the options off
        evaluate.__annotations__ = {p.name: p.annotation for p in params}
        return sub_command(eval_app, kind)(evaluate)

    return decorator


def _evaluate(kind: str, options: dict[str, Any]) -> None:
    """Run one evaluation under a progress bar and render its result. `options`: the command's parameters; every one
    but `RUN_OPTIONS` is a setting of the evaluation (`PARSED`, `FIELDS`)."""
    settings = {FIELDS.get(name, name): PARSED[name](value) if name in PARSED else value
                for name, value in options.items() if name not in RUN_OPTIONS}
    as_json = options["as_json"]
    with deferred_progress(kind, quiet=options["quiet"] or as_json) as update:  # errors before the first update print alone
        result = workspace(options["ctx"]).evaluate(kind, model=options["model"], extractors=options["extractor"], out=options["out"],
                                                    judge_weights=options.get("judge_weights"), progress=update, **settings)
    if as_json:  # the reproducible part only: the same command prints the same bytes in any home
        print_json(result.to_dict())
        return
    for spec in evaluation_named(kind).tables(asdict(result)):
        table(spec.title, spec.columns, spec.rows)
    console.print(f"{result.seconds:.1f} s; wrote {result.json_path} and {result.plot_path} (evaluation #{result.evaluation_id})",
                  highlight=False, soft_wrap=True)


@eval_command("image-level")
def image_level(
    images_per_class: ImagesPerClass = IMAGE_LEVEL.images_per_class,
    first_seed: FirstSeed = IMAGE_LEVEL.first_seed,
    seed: Seed = IMAGE_LEVEL.seed,
    fill: Fill = IMAGE_LEVEL.fill,
    random_draws: RandomDraws = IMAGE_LEVEL.random_draws,
    ns: Ns = _csv(IMAGE_LEVEL.ns),
    samples: Samples = IMAGE_LEVEL.samples,
    method: Annotated[str, typer.Option("--method", help="Attribution method(s) to compare on the same images, comma-separated or 'all': "
                      "smoothgrad, gradient, gradient-x-input, integrated-gradients (zeros baseline, 50 steps); one curve per extractor and method.")]
    = _csv(IMAGE_LEVEL.methods),
    train_images: Annotated[int, typer.Option("--train-images", help="Generated training images per class, seeds 0..N-1, whose token "
                            "counts rank the frequency baseline (generated if missing).")] = IMAGE_LEVEL.train_images,
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="Bootstrap resamples of the AUC differences' paired 95% intervals "
                         "(CORTEX - random, CORTEX - frequency; over images).")] = IMAGE_LEVEL.bootstrap,
    classes: EvalClasses = None,
    judge_weights: JudgeWeights = None,
) -> None:
    """Figure 3: judges' mean P(true class) as the top-n TSV tokens' patches are masked, vs n random ones; and insertion.

    On generated test images (sampled if missing), each extractor's TSV map ranks the positions;
    the pixel patches of the top n (5, 10, ..., 50) are filled and the judges score the image; the
    same n at seeded random positions (the same draws for every extractor) is the floor.
    Insertion (RISE): from the fully masked image, only the top n are put back. Both curves also
    for the frequency baseline; their AUCs (mean height over n/m^2) per selection and judge, with
    paired bootstrap 95% intervals of CORTEX - random and CORTEX - frequency over images.
    --fill tokens masks in token space and decodes with the VQGAN (slower: every masked grid is
    decoded). Defaults take a few minutes on 2 CPU cores for the mini model.

    Example: cortex eval image-level --model mini --images-per-class 4 --fill black
    Example: cortex eval image-level --model mini --fill tokens --random-draws 1
    Example: cortex eval image-level --model mini --method smoothgrad,gradient,gradient-x-input
    """


@eval_command("concept-level")
def concept_level(
    k: Annotated[Optional[int], typer.Option("-k", help="Tokens per concept (default: 100 as the paper; K/16 for codebooks under 1600 tokens (8 for the mini model)).")]
    = CONCEPT_LEVEL.k,
    top_n: TopN = CONCEPT_LEVEL.top_n,
    train_images: Annotated[int, typer.Option("--train-images", help="Indexed training images per class, seeds 0..N-1 (indexed now if missing).")]
    = CONCEPT_LEVEL.train_images,
    images_per_class: ImagesPerClass = CONCEPT_LEVEL.images_per_class,
    first_seed: FirstSeed = CONCEPT_LEVEL.first_seed,
    seed: Seed = CONCEPT_LEVEL.seed,
    fill: Fill = CONCEPT_LEVEL.fill,
    samples: Samples = CONCEPT_LEVEL.samples,
    classes: EvalClasses = None,
    judge_weights: JudgeWeights = None,
) -> None:
    """Table 2: mask every position whose token is in T*_concept; Acc, P, ΔA, ΔP and mean n per judge.

    T*_concept: the k tokens most frequent in the top-n TSV sets of the class's indexed training
    images (indexed first if needed); the frequency baseline: the k most frequent tokens of the
    class's training images. Also the baseline cut to CORTEX's n per image (a fairer comparison).
    --fill tokens masks in token space (each masked token refilled from its unmasked neighbours)
    and decodes the grid with the VQGAN, so the judges see an image the decoder can produce.

    Example: cortex eval concept-level --model mini --train-images 20 --images-per-class 4
    Example: cortex eval concept-level --model mini --fill tokens
    """


@eval_command("edit")
def edit(
    images_per_direction: Annotated[int, typer.Option("--images-per-direction", help="Source images per (source -> target) direction: seeds --first-seed .. +N-1.")]
    = EDIT.images_per_direction,
    first_seed: FirstSeed = EDIT.first_seed,
    seed: Seed = EDIT.seed,
    opt_seeds: Annotated[int, typer.Option("--opt-seeds", help="Optimiser seeds per source, region and method, derived from --seed (the embedding baseline draws no noise: run once).")]
    = EDIT.opt_seeds,
    steps: Steps = EDIT.steps,
    regions: Annotated[str, typer.Option("--regions", help="Region kinds, comma-separated: fixed, saliency, oracle, or 'all' (oracle needs the mini world's masks).")]
    = _csv(EDIT.regions),
    pairs: Annotated[Optional[str], typer.Option("--pairs", help="Concept pairs A:B,C:D (ids or names) (default for mini: the world's 4 part pairs).")] = None,
    region: Annotated[Optional[str], typer.Option("--region", "-r", help="The fixed box R0:R1,C0:C1 (default: the centre (m/4)x(m/4) window, 6:10,6:10 on 16x16).")]
    = EDIT.region,
    samples: Annotated[int, typer.Option("--samples", help="SmoothGrad samples N of the saliency box.")] = EDIT.samples,
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="Bootstrap resamples of the token - embedding 95% intervals.")] = EDIT.bootstrap,
    realism_images: Annotated[int, typer.Option("--realism-images", help="Generated train images per target class in its prior-NLL "
                              "range (the realism table; 0: no realism).")] = EDIT.realism_images,
    judge_weights: JudgeWeights = None,
) -> None:
    """Table 3: token selection vs embedding optimisation toward the paired concept, scored by judges.

    Both directions of every pair; each source image is edited inside an (m/4)x(m/4) box of one of
    three kinds, each its own rows: 'fixed' (the paper's fixed 4x4 box; the paper does not say
    where, so the centre; the default), 'saliency' (the window of highest summed TSV of the source
    image for its own class, by the extractor being evaluated) and 'oracle' (centred on the
    ground-truth part, mini world only: an upper bound, not the paper's protocol). Reports Acc_orig,
    P_orig, P_targ before, ΔP_orig / ΔP_targ (eq. 10) and the judges' target accuracy at the final
    step, and the paired bootstrap 95% interval of token - embedding over sources: 'win' only where
    it excludes 0. Realism: every edited grid's per-token NLL under the model's own prior for the
    target class, against the range of --realism-images generated images of that class; a grid far
    above it is flagged adversarial. --seed sets the optimiser seeds, saliency noise and bootstrap;
    --first-seed and --images-per-direction the sources. The defaults (80 sources x 3 seeds, fixed box, CE and RE)
    take about 5 minutes on 2 CPU cores; every further region kind adds about as much.

    Example: cortex eval edit --model mini --regions all --opt-seeds 3
    """


@eval_command("localization")
def localization(
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="The mini model (the only one with ground-truth masks) (default: mini).")] = None,
    images_per_class: Annotated[int, typer.Option("--images-per-class", help="Mini-world images per concept: seeds --first-seed .. +N-1.")]
    = LOCALIZATION.images_per_class,
    first_seed: FirstSeed = LOCALIZATION.first_seed,
    seed: Seed = LOCALIZATION.seed,
    ns: Ns = _csv(LOCALIZATION.ns),
    random_draws: RandomDraws = LOCALIZATION.random_draws,
    samples: Samples = LOCALIZATION.samples,
    classes: Annotated[Optional[str], typer.Option("--classes", help="Comma-separated class ids or names, or named concepts "
                       "(each one unit: its members' images; 'red' scored on the red pixels) (default: every class of the model).")]
    = None,
    score: ConceptScoreRule = LOCALIZATION.score,
) -> None:
    """Ground truth (mini world only): precision@n and pointing game of the top tokens on the object.

    Mini-world images with known object masks are encoded by the VQGAN; a token is on the object
    when >= 50% of its pixel patch is. Compared: each extractor's TSV ranking, the frequency
    baseline (positions by how common their token is in the class's generated training images)
    and random positions. A named concept in --classes is one unit: its members' images, its
    score (--score) explained, its members' training images counted; a concept named like a
    mini-world attribute ('red') is scored on that attribute's pixels instead of the objects.

    Example: cortex eval localization --images-per-class 5; cortex eval localization --classes red
    """


@eval_command("stability")
def stability(
    images_per_class: ImagesPerClass = STABILITY.images_per_class,
    first_seed: FirstSeed = STABILITY.first_seed,
    noise_seeds: Annotated[str, typer.Option("--noise-seeds", help="Saliency noise seeds compared pairwise (this command's randomness).")]
    = _csv(STABILITY.seeds),
    sample_counts: Annotated[str, typer.Option("--sample-counts", help="SmoothGrad N values.")] = _csv(STABILITY.sample_counts),
    ns: Annotated[str, typer.Option("--ns", help="Top-n sizes compared.")] = _csv(STABILITY.ns),
    classes: EvalClasses = None,
) -> None:
    """Stability: top-n overlap of saliency maps across noise seeds, across N, and fp32 vs bf16.

    Helps pick N with evidence: the overlap between seeds should approach 1 as N grows. Its
    randomness is the listed --noise-seeds, so it has no --seed.

    Example: cortex eval stability --noise-seeds 0,1,2 --sample-counts 5,10,20,50
    """


@eval_command("sanity")
def sanity(
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="The mini model (its world's masks give precision@5) (default: mini).")] = None,
    extractor: Annotated[str, typer.Option("--extractor", "-e", help="Extractor to check (default ce); several comma-separated or 'all' "
                         "check each, the first one's variants being the JSON's top-level keys.")] = "ce",
    images_per_class: Annotated[int, typer.Option("--images-per-class", help="Mini-world images per class: seeds --first-seed .. +N-1.")]
    = SANITY.images_per_class,
    first_seed: FirstSeed = SANITY.first_seed,
    seed: Seed = SANITY.seed,
    samples: Samples = SANITY.samples,
    random_draws: RandomDraws = SANITY.random_draws,
    independent: Annotated[bool, typer.Option("--independent/--no-independent", help="Also re-initialise each layer alone (doubles the maps computed).")]
    = SANITY.independent,
    permuted_images: Annotated[int, typer.Option("--permuted-images", help="Training images per class of the label-permuted extractor (the mini recipe: 300).")]
    = SANITY.permuted_per_class,
    permuted_epochs: Annotated[int, typer.Option("--permuted-epochs", help="Its training epochs (the mini recipe's 30).")]
    = SANITY.permuted_epochs,
    permuted_source: Annotated[str, typer.Option("--permuted-source", help="Its training images: 'world' (mini-world train images, encoded; "
                               "fast) or 'generated' (sampled from the prior as the recipe does; minutes on a CPU).")]
    = SANITY.permuted_source,
    classes: EvalClasses = None,
) -> None:
    """Sanity checks (Adebayo et al. 2018): do the TSV maps change when the extractor's weights or labels are randomised?

    On mini-world images (target: the true class, the same noise for every variant), the extractor's
    layers (a conv/linear with its batch norm) are re-initialised from the output down, one more per
    step (the cascade), and each alone (--independent); an extractor of the same architecture is
    trained on permuted labels (cached, reused on a rerun). Each variant's maps are compared with the
    trained ones: Spearman rank correlation, top-20 overlap, precision@5 on the object; the floor is
    two unrelated random maps. The check: after the full cascade and for the label-permuted
    extractor, top-20 overlap <= floor + 0.1 and precision@5 <= 1.5 x random; the table says whether
    it held. Defaults (CE, 2 images per class, N=10) take a few minutes on 2 CPU cores.

    Example: cortex eval sanity --extractor ce --images-per-class 2 --json
    """


@sub_command(eval_app, "all")
def eval_all(
    ctx: typer.Context,
    out: Path = typer.Option(Path("docs/eval"), "--out", "-o", help="Directory for every JSON, PNG, report.md and timings.json."),
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Regenerate every committed evaluation result from nothing, on the bundled mini model.

    Runs localization, image-level, concept-level, edit and stability with their default settings
    in a fresh temporary store (your database is neither read nor changed), then writes report.md.
    Two runs give byte-identical JSON and report.md; only timings.json differs. About 15 minutes on
    2 CPU cores.

    Example: cortex eval all --out docs/eval
    """
    with deferred_progress("eval all", quiet=quiet or as_json) as update:  # an unwritable --out is one line, with no bar
        result = workspace(ctx).evaluate_all(out, progress=update)
    if as_json:
        print_json(result)
        return
    console.print(f"wrote {result.report} and the JSON/PNG of {', '.join(result.kinds)} "
                  f"({sum(result.seconds.values()):.0f} s; per evaluation in timings.json)", highlight=False, soft_wrap=True)


@command("report")
def report(
    ctx: typer.Context,
    model: Model = None,
    out: Path = typer.Option(None, "--out", "-o", help="Markdown file (default: $CORTEX_HOME/reports/<model>/report.md)."),
    as_json: AsJson = False,
) -> None:
    """Gather the latest stored result of each `cortex eval` command into one Markdown file with plots.

    Nothing is recomputed: tables come from the stored JSON, plots are linked by relative path. The
    report opens with, and the terminal shows, what the runs say about trusting the explanations:
    the sanity checks' verdict, insertion against random, the paper's masking conclusions under each
    fill, and the prior NLL of edits.

    Example: cortex report --model mini --out README-results.md
    """
    result = workspace(ctx).report(model=model, out=out)
    if as_json:
        print_json(result)
        return
    for spec in result.trust:  # the report's first section: can these explanations be trusted?
        table(spec.title, spec.columns, spec.rows)
    console.print(f"wrote {result.path} ({', '.join(result.kinds)})", highlight=False, soft_wrap=True)
    if result.missing:
        console.print(f"not run yet: {', '.join(result.missing)}", highlight=False, soft_wrap=True)
