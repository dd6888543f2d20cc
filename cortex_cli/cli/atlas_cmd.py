"""`cortex atlas`: the saliency index as a static website."""

from __future__ import annotations

from pathlib import Path

import typer

from typing import Annotated

from ..atlas import PageSettings
from ..core.errors import CortexError
from .app import command, workspace
from .options import AsJson, ExtractorOfRuns, MethodOfRuns, Model, Quiet, Run, Split
from .render import console, deferred_progress, print_json

PAGES = PageSettings()  # the options' defaults


@command("atlas")
def atlas_cmd(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", "-o", help="Site directory (created; a new or empty one, or an earlier atlas to update)."),
    classes: str = typer.Option(None, "--classes", help="Concepts to give pages: 'goldfinch,black grouse,11', @file.txt or 'all' (default: every indexed class)."),
    model: Model = None,
    extractor: ExtractorOfRuns = None,
    method: MethodOfRuns = None,
    run: Run = None,
    top_k: int = typer.Option(PAGES.top_k, "-k", help="Salient tokens per concept page (T*_concept), and baseline tokens beside them."),
    crops: int = typer.Option(PAGES.crops, "--crops", help="Patch crops per salient token: the images where it is most salient."),
    neighbours: int = typer.Option(PAGES.neighbours, "--neighbours", help="Nearest codebook entries shown on each token page (0: none)."),
    baseline: Annotated[str, typer.Option("--baseline", help="Ranking baseline(s) beside T*_concept, over the same images, without an extractor: 'frequency' (the paper's: most frequent over all positions), 'specific' (most specific to the class: smoothed P(class | token); needs the same seeds of every class), both comma-separated, or 'none'.")] = ",".join(PAGES.baselines),
    split: Split = PAGES.split,
    batch_size: int = typer.Option(32, "--batch-size", "-b", help="Token grids decoded per batch on the device."),
    force: bool = typer.Option(False, "--force", help="Recompute and rewrite every page (default: only pages whose data changed)."),
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Write the token atlas: a static website of the saliency index (HTML, CSS, PNG; no server, no network).

    One page per concept (its top-k salient tokens beside the frequency baseline, with patch crops
    from the images where each is most salient, Figure-2 overlays, stored evaluations, edits and
    optimised grids), one page per token those pages list (the entry decoded alone, the classes where
    it is salient vs merely frequent, crops across classes, nearest codebook neighbours), and an index
    page with a filter box. Rerunning rewrites only the pages whose data changed; pictures are decoded
    in batches on --device. Open OUT/index.html in a browser.

    Example: cortex atlas --out site/
    Example: cortex atlas --classes 'red-capped bird,blue-capped bird' -k 10 --out site/
    """
    if not baseline.strip():
        raise CortexError("--baseline is empty; give 'frequency', 'specific', both comma-separated, or 'none'")
    kinds = tuple(k.strip() for k in baseline.split(",") if k.strip() and k.strip().lower() != "none")
    with deferred_progress("atlas", quiet=quiet or as_json) as update:  # a bad option is one line, with no bar before it
        result = workspace(ctx).atlas(out, classes=classes, model=model, extractor=extractor, method=method, run=run, k=top_k, crops=crops,
                                      neighbours=neighbours, baselines=kinds, split=split, batch_size=batch_size, force=force,
                                      progress=update)
    if as_json:
        print_json(result)
        return
    console.print(
        f"{result.model} / run {result.run_id} ({result.extractor}): {result.concepts} concept pages, "
        + (f"{result.named_concepts} named concept pages, " if result.named_concepts else "") + f"{result.tokens} token pages; "
        f"wrote {len(result.written)} files, {result.unchanged} pages unchanged"
        + (f", removed {len(result.removed)}" if result.removed else "")
        + f"; {result.pictures_written} pictures from {result.grids_decoded} decoded grids ({result.seconds:.1f} s)",
        highlight=False, soft_wrap=True,
    )
    console.print(f"open {result.index}", highlight=False, soft_wrap=True)
