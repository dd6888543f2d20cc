"""`cortex index`: the saliency index (TSV maps and each image's top-n tokens)."""

from __future__ import annotations

import time

from typing import Annotated

import typer

from .app import command, workspace
from .options import AsJson, ClassName, Classes, ConceptScoreRule, Extractor, FirstSeed, Images, Model, Quiet, SaliencyOptions, Split, class_choice, saliency_options
from ..models.targets import DEFAULT_RULE
from .render import console, print_json, deferred_progress


def _rate(update):
    """Wrap a progress update to show images/s."""
    start = time.perf_counter()
    first: list[int] = []

    def report(done: int, total: int, info: str = "") -> None:
        if not first:
            first.append(done)
        elapsed = time.perf_counter() - start
        rate = (done - first[0]) / elapsed if elapsed > 0 and done > first[0] else 0.0
        update(done, total, info=f"{info} {rate:.1f} img/s" if rate else info)

    return report


@command("index")
@saliency_options()
def index(
    ctx: typer.Context,
    class_spec: ClassName = None,
    classes: Classes = None,
    model: Model = None,
    extractor: Extractor = "ce",
    split: Split = "train",
    images: Images = 100,
    first_seed: FirstSeed = 0,
    saliency: SaliencyOptions = None,  # --seed .. --noise
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Images per saliency batch, mixed over classes (does not change "
                                           "the maps); default: 256 on an accelerator, 16 on a CPU.")] = None,
    score: ConceptScoreRule = DEFAULT_RULE,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Run CORTEX saliency over a class's generated images and store each image's top-n tokens and TSV map.

    Indexes image seeds --first-seed .. +N-1 (N = --images); --seed keys the saliency noise, drawn on the device
    (--noise philox; --noise host: the per-image CPU generators of runs made before it, another run).
    Target = the class's logit of the extractor f_Y; TSV(t) = max over channels of the absolute mean
    gradient over N noisy copies (paper §3.3, --method smoothgrad, the default). --method gradient,
    gradient-x-input or integrated-gradients (Captum; --ig-steps, --ig-baseline) index the same images
    as another run, side by side; parameters a method does not use are ignored.
    Resumable: rerunning the same command skips images already indexed with the same method and
    parameters; results are committed every 512 images or 1 s of work while the next batch computes, so
    a killed run loses at most what was not yet committed. Defaults: the authors' (N=20, alpha=0.2, n=20).

    The images of all classes form one job in mixed batches; under torchrun rank r takes every WORLD_SIZE-th
    batch, on cuda:LOCAL_RANK or the CPU; the rows are those of one process, and rank 0 prints the totals.

    A named concept (`cortex concepts add`) indexes seeds --first-seed .. +N-1 of each member class and
    explains the concept's score (--score), in a run of its own.

    Example: cortex index --class goldfinch --images 100
    Example: cortex index --class red --images 12
    Example: cortex index --classes 'goldfinch,black grouse' --images 100
    Example: cortex index --class goldfinch --method integrated-gradients --ig-baseline codebook-mean
    Example: torchrun --nproc-per-node 8 -m cortex_cli --db postgresql+psycopg://host/cortex index --class all --images 1000
    """
    ws = workspace(ctx)
    chosen = class_choice(class_spec, classes)
    with deferred_progress("indexing", quiet=quiet or as_json or not ws.is_main) as update:
        results = ws.index(chosen, images, model=model, extractor=extractor, split=split, first_seed=first_seed, batch_size=batch_size,
                           score=score, progress=_rate(update), **saliency)
    if not ws.is_main:
        return
    if as_json:
        print_json(results if len(results) > 1 else results[0])
        return
    ranks = f" on {ws.world_size} ranks" if ws.world_size > 1 else ""
    for r in results:
        concept = f"{r.concept} <- " if r.concept else ""
        console.print(
            f"{r.model} / {concept}{r.class_name} (class {r.class_id}) / {r.split}: indexed {r.added}, already indexed {r.skipped} "
            f"(run {r.run_id}, {r.settings['method']}, extractor {r.extractor}" + (f", {r.images_per_s:.1f} img/s)" if r.added else ")")
            + ranks, highlight=False, soft_wrap=True,
        )
    if not quiet:
        console.print(f"next: cortex top-tokens '{results[0].concept or results[0].class_name}' --baseline frequency",
                      highlight=False, soft_wrap=True)
