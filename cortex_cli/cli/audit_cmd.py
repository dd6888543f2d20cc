"""`cortex audit NEUTRAL --groups A,B`: which group a neutral concept's images lean toward (the authors' bias detection)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..index.audit import DEFAULT_K, DEFAULT_RESAMPLES
from .app import command, workspace
from .options import AsJson, CountedImages, EvalOut, ExtractorOfRuns, Model, Quiet, Run, Seed
from .render import console, deferred_progress, print_json, table


def _ci(ci) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "n/a"


@command("audit")
def audit_cmd(
    ctx: typer.Context,
    neutral: str = typer.Argument(..., metavar="NEUTRAL", help="The audited class or concept (its stored images of --split)."),
    groups: str = typer.Option(..., "--groups", help="The two groups compared, 'A,B': classes or concepts, indexed (`cortex index`)."),
    split: Annotated[str, typer.Option("--split", help="Which stored images of NEUTRAL are audited: train, val or test.")] = "test",
    k: Annotated[int, typer.Option("-k", help="Tokens per concept: each group's T* size before shared tokens are dropped.")] = DEFAULT_K,
    images: CountedImages = None,
    extractor: ExtractorOfRuns = None,
    run: Run = None,
    seed: Seed = 0,
    resamples: Annotated[int, typer.Option("--resamples", help="Bootstrap resamples of the 95% intervals (over audited images).")]
    = DEFAULT_RESAMPLES,
    contrast: Annotated[bool, typer.Option("--contrast/--no-contrast", help="Also drop T* tokens the other group's images hold as "
                                           "often (--no-contrast: only tokens in both T*, the authors' rule).")] = True,
    model: Model = None,
    out: EvalOut = None,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Which of two groups NEUTRAL's images lean toward: the authors' bias detection, reproducible.

    Each group's T* (its top-k salient tokens of the train split, from the index) is counted in every
    stored --split image of NEUTRAL (never an image a T* counted); tokens in both T*, and with
    --contrast those the other group's images hold as often, count for neither. Reported: each
    group's share of images holding more of its tokens (ties lean to neither), Cliff's delta of the
    two count distributions (> 0: toward the first group), both with bootstrap 95% intervals; where
    the model has judges, how often each image's lean agrees with theirs. Stored for `cortex report`;
    JSON and a plot go to --out.
    Example: cortex audit "capped bird" --groups "red-capped bird,blue-capped bird"
    """
    with deferred_progress("audit", quiet=quiet or as_json) as update:
        result = workspace(ctx).audit(neutral, groups, split=split, k=k, model=model, extractor=extractor, run=run, images=images,
                                      seed=seed, bootstrap=resamples, contrast=contrast, out=out, progress=update)
    if as_json:
        print_json(result.to_dict())
        return
    left_out = f" ({result.excluded} left out)" if result.excluded else ""
    title = f"{result.neutral}: {result.images} {result.split} images audited{left_out}"
    table(title, ["group", "tokens", "mean count", "share", "95% CI"],
          [[g.name, len(g.tokens), f"{g.mean_count:.2f}", f"{g.share:.2f}", _ci(g.share_ci)] for g in result.groups])
    first = result.groups[0].name
    console.print(f"Cliff's delta {result.cliff_delta:+.3f} {_ci(result.cliff_delta_ci)} (> 0: toward {first!r}); "
                  f"ties {result.ties:.2f}; dropped: {len(result.shared_tokens)} shared, {len(result.common_tokens)} common tokens",
                  highlight=False, soft_wrap=True)
    for name, j in result.judges.items():
        agreement = "n/a" if j.agreement is None else f"{j.agreement:.2f}"
        console.print(f"judge {name}: agrees with the lean on {agreement} of {j.compared} leaning images", highlight=False)
    for notice in result.notices:
        console.print(notice, highlight=False, soft_wrap=True)
    console.print(f"plot: {result.plot_path}", highlight=False, soft_wrap=True)
