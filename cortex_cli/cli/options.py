"""The CLI's option vocabulary: one `Annotated` alias per option, so a flag means one thing everywhere.

Commands write `model: Model = None` or `samples: Samples = SALIENCY.samples`: the flags and help
live here once, and defaults that a settings dataclass owns are read from it, never retyped.
A long flag means one thing in every command (`tests/cli/test_options.py` reads every command's):
--steps is always optimisation steps, --baseline a ranking baseline, --method an attribution method
(Integrated Gradients' own are --ig-steps and --ig-baseline; edit's token-vs-embedding is --space).
Short flags, each with one meaning: -m model, -c class, -e extractor, -n images, -o out, -q quiet,
-k tokens per concept, -b batch size, -r region, -t token, -a architecture, -R restarts.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from ..attribution import SaliencySettings, field_help

SALIENCY = SaliencySettings()  # the saliency options' defaults; their help is the fields' (attribution/settings.py)

SEED_HELP = ("Seed of this command's own random draws (noise, initialisation, random floors); which images it uses is "
             "set by --images/--first-seed. Same seed, same rows.")
FIRST_SEED_HELP = "First image seed: the command uses image seeds S .. S+N-1 (N = --images)."

# what and where
Model = Annotated[Optional[str], typer.Option("--model", "-m", help="Registered model (default: mini).")]
ClassName = Annotated[Optional[str], typer.Option("--class", "-c", help="Class id or name (e.g. 11 or goldfinch), or 'all'; see `cortex models list --all-classes`.")]
Classes = Annotated[Optional[str], typer.Option("--classes", help="Instead of --class: several classes, 'goldfinch,black grouse,11' or @file.txt (one per line).")]
EvalClasses = Annotated[Optional[str], typer.Option("--classes", help="Comma-separated class ids or names (default: every class of the model).")]
Split = Annotated[str, typer.Option("--split", help="Which generated images: train, val or test (part of each image's identity and random stream).")]
EvalOut = Annotated[Optional[Path], typer.Option("--out", "-o", help="Directory for the JSON and PNG (default: $CORTEX_HOME/reports/<model>/).")]

# which images and which randomness
Images = Annotated[int, typer.Option("--images", "-n", help="Images per class: seeds --first-seed .. +N-1; missing ones are generated first.")]
FirstSeed = Annotated[int, typer.Option("--first-seed", help=FIRST_SEED_HELP)]
Seed = Annotated[int, typer.Option("--seed", help=SEED_HELP)]
ImagesPerClass = Annotated[int, typer.Option("--images-per-class", help="Test images per class: seeds --first-seed .. +N-1 (generated if missing).")]
CountedImages = Annotated[Optional[int], typer.Option("--images", "-n", help="Count exactly seeds 0..N-1 of the split (default: every image the run indexed).")]

# extractors
Extractor = Annotated[str, typer.Option("--extractor", "-e", help="Which extractor f_Y: ce or re (or a name you trained).")]
ExtractorOfRuns = Annotated[Optional[str], typer.Option("--extractor", "-e", help="Read the newest run of this extractor (default: the newest run of any).")]
Extractors = Annotated[str, typer.Option("--extractor", "-e", help="Extractor name(s), comma-separated, or 'all' (the mini model: ce and re).")]

# saliency (attribution/settings.py owns the defaults and the help)
Method = Annotated[str, typer.Option("--method", help=field_help("method"))]
Samples = Annotated[int, typer.Option("--samples", help=field_help("samples"))]
Alpha = Annotated[float, typer.Option("--alpha", help=field_help("alpha"))]
IgSteps = Annotated[int, typer.Option("--ig-steps", help=field_help("steps"))]
IgBaseline = Annotated[str, typer.Option("--ig-baseline", help=field_help("baseline"))]
TopN = Annotated[int, typer.Option("--top-n", help=field_help("top_n"))]
Reduce = Annotated[str, typer.Option("--reduce", help=field_help("reduce"))]
Precision = Annotated[str, typer.Option("--precision", help=field_help("precision"))]
Noise = Annotated[str, typer.Option("--noise", help=field_help("noise"))]

# The saliency options of a command that computes maps, in their command-line order: parameter (the `Workspace`
# keyword), option, default (--precision: None, the device's default, `attribution.default_precision`).
SALIENCY_OPTIONS = (
    ("seed", Seed, SALIENCY.seed), ("method", Method, SALIENCY.method), ("samples", Samples, SALIENCY.samples),
    ("alpha", Alpha, SALIENCY.alpha), ("ig_steps", IgSteps, SALIENCY.steps), ("ig_baseline", IgBaseline, SALIENCY.baseline),
    ("top_n", TopN, SALIENCY.top_n), ("reduce", Reduce, SALIENCY.reduce), ("precision", Precision, None), ("noise", Noise, SALIENCY.noise),
)
SaliencyOptions = dict[str, Any]  # what a command's `saliency` parameter receives: those options' values by parameter


def saliency_options(*, top_n: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the saliency options (`SALIENCY_OPTIONS`) where its signature has `saliency: SaliencyOptions`.

    The command gets their values in that one dict, ready for `Workspace.index(..., **saliency)` and the like.
    `top_n=False` leaves --top-n out (a command whose --top-n says how many tokens it shows).
    """
    options = [option for option in SALIENCY_OPTIONS if top_n or option[0] != "top_n"]

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(func, eval_str=True)
        params: list[inspect.Parameter] = []
        for param in signature.parameters.values():
            if param.name == "saliency":
                params += [inspect.Parameter(name, param.kind, default=default, annotation=alias) for name, alias, default in options]
            else:
                params.append(param)

        @functools.wraps(func)
        def command(*args: Any, **kwargs: Any) -> Any:
            return func(*args, saliency={name: kwargs.pop(name) for name, _, _ in options}, **kwargs)

        command.__signature__ = signature.replace(parameters=params)  # what typer reads the options from
        command.__annotations__ = {p.name: p.annotation for p in params} | {"return": signature.return_annotation}
        return command

    return decorate

# what is explained or optimised: a class or a named concept (`cortex concepts add`)
TARGET_HELP = "Target class or concept: a class id or name, or a named concept (`cortex concepts add`)"
ExplainTarget = Annotated[Optional[str], typer.Option("--target", help=f"{TARGET_HELP} to explain instead of the image's class (default: its stored or PNG class, else the predicted one).")]
ConceptScoreRule = Annotated[str, typer.Option("--score", help="A named concept's f_Y read off the class extractor: logsumexp or log-prob of its members' logits (docs: concepts).")]

# optimisation (edit, optimize, eval edit)
L2Weight = Annotated[float, typer.Option("--l2-weight", help="Weight of the ||E||^2 regulariser over the region (the alpha of paper eq. 8; --alpha is SmoothGrad's noise).")]
Steps = Annotated[int, typer.Option("--steps", help="Optimisation steps (Adam on the token selection or the embedding); the final step is the result.")]

# reading the index
RankingBaseline = Annotated[Optional[str], typer.Option("--baseline", help="Ranking baseline beside T*_concept, over the same images, without an extractor: 'frequency' (the paper's: most frequent over all positions) or 'specific' (most specific to the class: smoothed P(class | token)).")]
MethodOfRuns = Annotated[Optional[str], typer.Option("--method", help="Read the newest run of this attribution method (default: of any; see `cortex index --method`).")]
Run = Annotated[Optional[int], typer.Option("--run", help="Read this saliency run (its run_id in `cortex index --json`) instead of the newest.")]

# run control and output
TopK = Annotated[int, typer.Option("-k", help="Tokens per concept (the paper uses 100).")]
Region = Annotated[str, typer.Option("--region", "-r", help="Token rectangle R0:R1,C0:C1, half-open rows then columns (4:8,4:8 = 16 tokens); also R,C or all.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON (no progress bar).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
JudgeWeights = Annotated[Optional[Path], typer.Option("--judge-weights", help="Directory with torchvision's ImageNet judge weights (.pth) if not in the torch hub cache.")]
Fill = Annotated[str, typer.Option("--fill", help="Masking fill: black (the paper's), mean or blur pixel patches, or tokens (each masked "
                                    "token replaced by the most frequent of its unmasked neighbours', the grid decoded by the VQGAN).")]
Ns = Annotated[str, typer.Option("--ns", help="Numbers of masked (or ranked) tokens n, comma-separated.")]
RandomDraws = Annotated[int, typer.Option("--random-draws", help="Seeded random draws per image (the floor).")]


def class_choice(class_spec: str | None, classes: str | None) -> str:
    """The classes of a command with `--class C` or `--classes LIST`: exactly one of the two."""
    from ..core.errors import CortexError

    if (class_spec is None) == (classes is None):
        raise CortexError("give one of --class C (an id, a name or 'all') and --classes 'a,b,c' / --classes @file.txt")
    return class_spec if class_spec is not None else classes


# What each long flag that several commands share means: a phrase every command's help for it contains
# (case-insensitive). tests/cli/test_options.py checks every command against it, so a flag cannot quietly
# take a second meaning; a new shared flag needs a line here.
MEANINGS = {
    "--alpha": "noise scale",
    "--baseline": "ranking baseline",
    "--batch-size": "batch",
    "--bootstrap": "bootstrap resamples",
    "--class": "class",
    "--classes": "'goldfinch,black grouse,11'|comma-separated class",
    "--concept": "concept",
    "--db": "database url",
    "--device": "cuda",
    "--extractor": "extractor",
    "--first-seed": "first image seed",
    "--images": "seeds",
    "--images-per-class": "per class|per concept",
    "--init": "start",
    "--json": "json",
    "--l2-weight": "regulariser",
    "--lr": "adam learning rate",
    "--method": "attribution method",
    "--model": "model",
    "--noise": "noise generator",
    "--ns": "n|top-n",
    "--objective": "target logit",
    "--out": "write|directory|file",
    "--precision": "fp32.*bf16",
    "--quiet": "no progress bar",
    "--region": "token rectangle|box",
    "--run": "saliency run",
    "--score": "concept's f_y",
    "--samples": "smoothgrad|noisy copies",
    "--seed": "this command's own random draws",
    "--split": "split|train, val or test",
    "--steps": "optimisation steps",
    "--tau": "gumbel-softmax temperature",
    "--target": "target class or concept",
    "--tau-final": "anneal tau",
    "--token": "codebook token|bearer token",  # two meanings, said: show's token to box, serve's access token (issue 32's name)
    "--top-n": "tokens",
    "--train-images": "training images per class",
}
