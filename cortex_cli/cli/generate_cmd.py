"""`cortex generate`: sample class-conditional token grids into the store (and PNGs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import command, workspace
from .options import AsJson, ClassName, Classes, FirstSeed, Model, Quiet, Split, class_choice
from .render import console, print_json, deferred_progress


@command("generate")
def generate(
    ctx: typer.Context,
    class_spec: ClassName = None,
    classes: Classes = None,
    n: Annotated[int, typer.Option("--images", "-n", help="Images per class: seeds --first-seed .. +N-1 (each image's randomness is keyed by its seed).")] = ...,
    model: Model = None,
    split: Split = "train",
    first_seed: FirstSeed = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Images per sampling batch, mixed over classes (does not change "
                                           "the images); default: what the device holds (CUDA: by free memory; CPU: 32).")] = None,
    out: Path = typer.Option(None, "--out", "-o", help="Also write PNGs <class>_<split>_<seed>.png carrying their tokens here."),
    top_k: int = typer.Option(None, "--top-k", help="Keep the k most likely tokens per step; 0 disables (default: the model's)."),
    top_p: float = typer.Option(None, "--top-p", help="Nucleus sampling mass in (0, 1]; 1 disables (default: the model's)."),
    temperature: float = typer.Option(None, "--temperature", help="Softmax temperature > 0 (default: the model's)."),
    sampler: str = typer.Option(None, "--sampler", help="philox (default: the GPU-native sampler, noise keyed by image and step, "
                                "drawn on the device) or host (the older sampler, as older stores' images were made)."),
    precision: str = typer.Option(None, "--precision", help="The prior's precision while sampling: fp32 (default) or bf16 "
                                  "(philox; part of each image's identity)."),
    cfg_scale: float = typer.Option(None, "--cfg-scale", help="Classifier-free guidance scale (llamagen: default 4.0, "
                                    "its official sampler's; 1 disables; taming has no null class and refuses it)."),
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Sample N images of a class from the model's prior into the database; optionally save PNGs.

    Idempotent: an image is identified by (model, class, split, seed, sampler), so rerunning the
    same command adds no rows (and only rewrites PNGs that are missing). The default sampler is
    the model's (the mini model: top-k 16; others: top-k 600, top-p 0.92, as in taming's README).
    PNGs carry their token grid and model name in PNG text metadata, for `cortex edit img.png`.

    The missing images of all classes form one job in full batches; under torchrun rank r takes every
    WORLD_SIZE-th of them and the rows are those of one process; rank 0 prints the totals.

    Example: cortex generate --class goldfinch -n 32 --split train --out samples/
    Example: cortex generate --classes @birds.txt -n 100
    Example: torchrun --nproc-per-node 8 -m cortex_cli --db postgresql+psycopg://host/cortex generate --class goldfinch -n 1000
    """
    ws = workspace(ctx)
    chosen = class_choice(class_spec, classes)
    with deferred_progress(f"sampling ({split})", quiet=quiet or as_json or not ws.is_main) as update:
        results = ws.generate(chosen, n, model=model, split=split, first_seed=first_seed, batch_size=batch_size, out=out, top_k=top_k,
                              top_p=top_p, temperature=temperature, sampler=sampler, precision=precision,
                              cfg_scale=cfg_scale, progress=update)
    if not ws.is_main:
        return
    if as_json:
        print_json(results if len(results) > 1 else results[0])
        return
    for result in results:
        console.print(
            f"{result.model} / {result.class_name} (class {result.class_id}) / {result.split}: "
            f"added {result.added}, already stored {result.skipped} ({result.sampler})"
            + (f" on {ws.world_size} ranks" if ws.world_size > 1 else ""),
            highlight=False, soft_wrap=True,
        )
    if results[0].png_paths:
        console.print(f"PNGs with token metadata in {Path(results[0].png_paths[0]).parent}", highlight=False, soft_wrap=True)
