"""`cortex top-tokens` and `cortex token`: what is asked of the index (T*_concept beside its baselines; a token's classes)."""

from __future__ import annotations

import csv
import sys

import typer

from ..core.errors import CortexError
from .app import command, workspace
from .options import AsJson, CountedImages, ExtractorOfRuns, MethodOfRuns, Model, RankingBaseline, Run, Split, TopK
from .render import console, print_json, table


@command("top-tokens")
def top_tokens_cmd(
    ctx: typer.Context,
    class_spec: str = typer.Argument(None, metavar="CLASS", help="Class id or name, or a named concept (or give --classes instead)."),
    classes: str = typer.Option(None, "--classes", help="Instead of CLASS: several concepts, 'goldfinch,black grouse,11' or @file.txt; one table each (a JSON list with --json)."),
    k: TopK = 100,
    baseline: RankingBaseline = None,
    images: CountedImages = None,
    extractor: ExtractorOfRuns = None,
    method: MethodOfRuns = None,
    run: Run = None,
    model: Model = None,
    split: Split = "train",
    as_json: AsJson = False,
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV (one row per rank; baseline columns with --baseline)."),
) -> None:
    """The concept's top-k tokens: those most frequent in its images' top-n saliency sets (T*_concept).

    Counts come from the index (`cortex index`), computed in SQL over exactly one set of images (the
    title says which seeds). Columns: count = occurrences in the per-image top-n sets (the paper's
    Freq), images = images containing it, mean TSV.
    Example: cortex top-tokens goldfinch -k 20 --baseline specific
    Example: cortex top-tokens --classes 'goldfinch,black grouse' -k 10 --json
    """
    ws = workspace(ctx)
    if (class_spec is None) == (classes is None):
        raise CortexError("give one concept (cortex top-tokens goldfinch) or --classes 'goldfinch,black grouse' / --classes @file.txt")
    options = dict(model=model, baseline=baseline, images=images, extractor=extractor, method=method, run=run, split=split)
    results = ws.top_tokens_of(classes, k, **options) if classes is not None else [ws.top_tokens(class_spec, k, **options)]
    if as_json:
        print_json(results if classes is not None else results[0])
    elif as_csv:
        _top_tokens_csv(results, baseline, with_class=classes is not None)
    else:
        for result in results:
            _top_tokens_table(result, baseline)


def _top_tokens_csv(results, baseline: str | None, with_class: bool) -> None:
    writer = csv.writer(sys.stdout)
    header = ["rank", "token", "count", "n_images", "mean_tsv"] + (["baseline_token", "baseline_count", "baseline_n_images"] if baseline else [])
    writer.writerow((["class_id", "class"] if with_class else []) + header)
    for result in results:
        base = result.baseline or []
        for i in range(max(len(result.rows), len(base))):
            r = result.rows[i] if i < len(result.rows) else None
            row = [i + 1] + ([r.token, r.count, r.n_images, f"{r.mean_tsv:.6g}"] if r else ["", "", "", ""])
            if baseline:
                b = base[i] if i < len(base) else None
                row += [b.token, b.count, b.n_images] if b else ["", "", ""]
            writer.writerow(([result.class_id, result.class_name] if with_class else []) + row)


def _top_tokens_table(result, baseline: str | None) -> None:
    base = result.baseline or []
    of = f" of {len(result.members)} classes" if result.members else ""
    title = (f"{result.class_name}: top {len(result.rows)} salient tokens ({result.images_indexed} {result.split} images{of}, "
             f"seeds {result.image_seeds}; run {result.run_id}, {result.extractor})")
    if baseline:
        rows = []
        for i in range(max(len(result.rows), len(base))):
            r = result.rows[i] if i < len(result.rows) else None
            b = base[i] if i < len(base) else None
            rows.append([i + 1, r.token if r else "", r.count if r else "", r.n_images if r else "", r.mean_tsv if r else "",
                         b.token if b else "", b.count if b else ""])
        table(title, ["rank", "token", "count", "images", "mean TSV", f"{baseline} token", "its count"], rows)
        against = f", against {result.contrast_images} images of {result.contrast_classes} classes" if result.contrast_classes else ""
        console.print(
            f"overlap with the {baseline} baseline (same {result.baseline_images} images{against}): {result.overlap} of "
            f"{len(result.rows)} tokens ({result.overlap_fraction:.0%}), Jaccard {result.jaccard:.3f}", highlight=False, soft_wrap=True,
        )
    else:
        table(title, ["rank", "token", "count", "images", "mean TSV"], [[r.rank, r.token, r.count, r.n_images, r.mean_tsv] for r in result.rows])


@command("token")
def token_cmd(
    ctx: typer.Context,
    token: int = typer.Argument(..., help="Codebook index (0..K-1)."),
    top: int = typer.Option(20, "--top", help="Classes to list."),
    images: CountedImages = None,
    extractor: ExtractorOfRuns = None,
    model: Model = None,
    split: Split = "train",
    as_json: AsJson = False,
) -> None:
    """Which classes use a token most: as a salient token (index) and as a plain occurrence (all positions).

    Both views count the same images: those the run indexed (without an index, every stored image).
    Ranks: 'class rank' orders the classes; 'token rank' is the token's rank inside that class's own list.
    Example: cortex token 42 --top 10
    """
    usage = workspace(ctx).token(token, top=top, images=images, extractor=extractor, model=model, split=split)
    if as_json:
        print_json(usage)
        return
    cols = ["class rank", "class", "count", "images", "token rank"]
    if usage.salient:
        table(f"token {token} as a salient token (run {usage.run_id}, {usage.extractor}; {usage.images_counted} images)", cols,
              [[u.class_rank, f"{u.class_name} ({u.class_id})", u.count, u.n_images, u.token_rank] for u in usage.salient])
    else:
        console.print(f"token {token} is not salient in any indexed image" + ("" if usage.run_id else " (nothing indexed yet; run `cortex index --class <class>`)"), highlight=False)
    if usage.occurrence:
        table(f"token {token} as a plain occurrence (the same {usage.images_counted} {usage.split} images)", cols,
              [[u.class_rank, f"{u.class_name} ({u.class_id})", u.count, u.n_images, u.token_rank] for u in usage.occurrence])
    else:
        console.print(f"token {token} occurs in none of the {usage.images_counted} counted {usage.split} images", highlight=False)
