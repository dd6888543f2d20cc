"""`cortex generate`: sample class-conditional token grids into the store (and PNGs)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from .. import generation, model_registry
from ..class_subsets import select_classes
from ..distributed import DistContext, init_from_env
from .app import command, state
from .options import AsJson, BatchSize, ClassName, Classes, FirstSeed, Model, Quiet, Split
from .render import console, print_json, progress


@command("generate")
def generate(
    ctx: typer.Context,
    class_spec: ClassName = None,
    classes: Classes = None,
    n: Annotated[int, typer.Option("--images", "-n", help="Images per class: seeds --first-seed .. +N-1 (each image's randomness is keyed by its seed).")] = ...,
    model: Model = None,
    split: Split = "train",
    first_seed: FirstSeed = 0,
    batch_size: BatchSize = 16,
    out: Path = typer.Option(None, "--out", "-o", help="Also write PNGs <class>_<split>_<seed>.png carrying their tokens here."),
    top_k: int = typer.Option(None, "--top-k", help="Keep the k most likely tokens per step; 0 disables (default: the model's)."),
    top_p: float = typer.Option(None, "--top-p", help="Nucleus sampling mass in (0, 1]; 1 disables (default: the model's)."),
    temperature: float = typer.Option(None, "--temperature", help="Softmax temperature > 0 (default: the model's)."),
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Sample N images of a class from the model's prior into the database; optionally save PNGs.

    Idempotent: an image is identified by (model, class, split, seed, sampler), so rerunning the
    same command adds no rows (and only rewrites PNGs that are missing). The default sampler is
    the model's (the mini model: top-k 16; others: top-k 600, top-p 0.92, as in taming's README).
    PNGs carry their token grid and model name in PNG text metadata, for `cortex edit img.png`.

    Under torchrun the seeds are dealt out in blocks of --batch-size (block i to rank (i + class id) % WORLD_SIZE),
    so the rows are those of one process; rank 0 prints the totals.

    Example: cortex generate --class goldfinch -n 32 --split train --out samples/
    Example: cortex generate --classes @birds.txt -n 100
    Example: torchrun --nproc-per-node 8 -m cortex_cli --db postgresql+psycopg://host/cortex generate --class goldfinch -n 1000
    """
    app_state = state(ctx)
    dist = init_from_env(app_state.device)
    try:
        _generate(app_state, dist, class_spec, classes, n, model, split, first_seed, batch_size, out, top_k, top_p, temperature,
                  as_json, quiet)
        dist.barrier()  # no rank tears the process group down while another still uses it
    finally:
        dist.destroy()


def _generate(app_state, dist: DistContext, class_spec, classes, n, model, split, first, batch_size, out, top_k, top_p,
              temperature, as_json, quiet) -> None:
    store = dist.main_first(app_state.store)  # rank 0 migrates the database before the others open it
    device = dist.device
    info = model_registry.get_model(store, model)
    targets = select_classes(store, info, class_spec, classes)
    generation.check_request(n, split=split, batch_size=batch_size, out_dir=out)  # fail before the progress bar
    sampler = None
    if top_k is not None or top_p is not None or temperature is not None:
        sampler = generation.resolve_sampler(info, top_k, top_p, temperature, device)
    results = []
    for cls in targets:
        label = f"sampling {cls.name} ({split})" + (f", rank 0's shard of {dist.world_size}" if dist.distributed else "")
        with progress(label, quiet=quiet or as_json or not dist.is_main) as update:
            result = generation.generate(
                store, info, cls, n, split=split, seed=first, batch_size=batch_size, sampler=sampler, out_dir=out,
                device=device, progress=update, shard=dist.work(batch_size),
            )
        if dist.distributed:
            result = _merge(dist, result, list(range(first, first + n)), batch_size)
        results.append(result)
    if not dist.is_main:
        return
    if as_json:
        print_json(results if len(results) > 1 else results[0])
        return
    for result in results:
        console.print(
            f"{result.model} / {result.class_name} (class {result.class_id}) / {result.split}: "
            f"added {result.added}, already stored {result.skipped} ({result.sampler})"
            + (f" on {dist.world_size} ranks" if dist.distributed else ""),
            highlight=False, soft_wrap=True,
        )
    if results[0].png_paths:
        console.print(f"PNGs with token metadata in {Path(results[0].png_paths[0]).parent}", highlight=False, soft_wrap=True)


def _merge(dist: DistContext, result: generation.GenerationResult, seeds: list[int], block: int) -> generation.GenerationResult:
    """The whole job's result from every rank's: counts summed, ids and PNG paths back in seed order."""
    added, skipped = dist.all_reduce_counts([result.added, result.skipped])
    mine = dist.shard(seeds, block, offset=result.class_id)
    parts = dist.all_gather((dict(zip(mine, result.image_ids)), dict(zip(mine, result.png_paths))))
    ids = {s: i for part, _ in parts for s, i in part.items()}
    paths = {s: p for _, part in parts for s, p in part.items()}
    return dataclasses.replace(
        result, requested=len(seeds), added=int(added), skipped=int(skipped), image_ids=[ids[s] for s in seeds],
        png_paths=[paths[s] for s in seeds] if paths else [],
    )
