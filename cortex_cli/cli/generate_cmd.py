"""`cortex generate`: sample class-conditional token grids into the store (and PNGs)."""

from __future__ import annotations

from pathlib import Path

import typer

from .. import generation, registry
from .app import command, state
from .render import console, print_json, progress


@command("generate")
def generate(
    ctx: typer.Context,
    class_spec: str = typer.Option(..., "--class", "-c", help="Class id or name (e.g. 11 or goldfinch); see `cortex models list --classes`."),
    n: int = typer.Option(..., "-n", help="Number of images (seeds SEED .. SEED+N-1)."),
    model: str = typer.Option(None, "--model", "-m", help="Registered model (default: mini)."),
    split: str = typer.Option("train", "--split", help="train, val or test (part of each image's identity and random stream)."),
    seed: int = typer.Option(None, "--seed", help="First image seed (default: the global --seed, 0)."),
    batch_size: int = typer.Option(16, "--batch-size", "-b", help="Images per forward pass and per transaction (does not change the tokens)."),
    out: Path = typer.Option(None, "--out", "-o", help="Also write PNGs <class>_<split>_<seed>.png carrying their tokens here."),
    top_k: int = typer.Option(None, "--top-k", help="Keep the k most likely tokens per step; 0 disables (default: the model's)."),
    top_p: float = typer.Option(None, "--top-p", help="Nucleus sampling mass in (0, 1]; 1 disables (default: the model's)."),
    temperature: float = typer.Option(None, "--temperature", help="Softmax temperature > 0 (default: the model's)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON (no progress bar)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Sample N images of a class from the model's prior into the database; optionally save PNGs.

    Idempotent: an image is identified by (model, class, split, seed, sampler), so rerunning the
    same command adds no rows (and only rewrites PNGs that are missing). The default sampler is
    the model's (the mini model: top-k 16; others: top-k 600, top-p 0.92, as in taming's README).
    PNGs carry their token grid and model name in PNG text metadata, for `cortex edit img.png`.

    Example: cortex generate --class goldfinch -n 32 --split train --out samples/
    """
    app_state = state(ctx)
    store = app_state.store()
    device = app_state.torch_device()
    info = registry.get_model(store, model)
    cls = registry.resolve_class(store, info, class_spec)
    generation.check_request(n, split=split, batch_size=batch_size, out_dir=out)  # fail before the progress bar
    sampler = None
    if top_k is not None or top_p is not None or temperature is not None:
        sampler = generation.resolve_sampler(info, top_k, top_p, temperature, device)
    with progress(f"sampling {cls.name} ({split})", quiet=quiet or as_json) as update:
        result = generation.generate(
            store, info, cls, n, split=split, seed=app_state.seed if seed is None else seed,
            batch_size=batch_size, sampler=sampler, out_dir=out, device=device, progress=update,
        )
    if as_json:
        print_json(result)
        return
    console.print(
        f"{result.model} / {result.class_name} (class {result.class_id}) / {result.split}: "
        f"added {result.added}, already stored {result.skipped} ({result.sampler})",
        highlight=False, soft_wrap=True,
    )
    if result.png_paths:
        console.print(f"PNGs with token metadata in {Path(result.png_paths[0]).parent}", highlight=False, soft_wrap=True)
