"""`cortex image` and `cortex mask`: one stored image, and what the judges say with some of its tokens masked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..core.errors import CortexError
from .app import command, workspace
from .options import AsJson, ExtractorOfRuns, Fill, Model, Seed
from .render import console, print_json, table


def _image_arg(image: str) -> int | Path:
    return int(image) if image.isdigit() else Path(image)


@command("image")
def image(
    ctx: typer.Context,
    image_id: int = typer.Argument(..., help="A stored image id (see `cortex generate --json`)."),
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write it as a cortex PNG (its tokens in the metadata).")] = None,
    model: Model = None,
    as_json: AsJson = False,
) -> None:
    """A stored image: class, split, seed, sampler, the index runs holding its TSV map; --json adds its token grid.

    Example: cortex image 17 --out img17.png
    """
    result = workspace(ctx).image(image_id, model=model, out=out)
    if as_json:
        print_json(result)
        return
    rows = result.table_rows()[0]
    table(f"image {result.id} of model {result.model}", ["field", "value"], [[k, v] for k, v in rows.items() if k != "id"])
    if result.out:
        console.print(f"wrote {result.out}", highlight=False, soft_wrap=True)


def _positions(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise CortexError(f"--positions takes comma-separated integers (row * m + col), got {text!r}") from None


@command("mask")
def mask(
    ctx: typer.Context,
    image: str = typer.Argument(..., help="A stored image id, or a PNG (a cortex PNG carries its tokens)."),
    positions: Annotated[Optional[str], typer.Option("--positions", help="Mask these positions (row * m + col, comma-separated).")] = None,
    top_n: int = typer.Option(5, "--top-n", help="Without --positions: mask the image's top-n TSV tokens."),
    fill: Fill = "black",
    target: Annotated[Optional[str], typer.Option("--class", "-c", help="The class the judges score (default: the image's own).")] = None,
    extractor: ExtractorOfRuns = None,
    seed: Seed = 0,
    model: Model = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write a strip: original | masked | random (PNG).")] = None,
    as_json: AsJson = False,
) -> None:
    """The judges' P(class) with an image's top-n (or given) tokens masked, beside as many seeded random tokens (Figure 3).

    Examples: cortex mask 17 --top-n 5 ;  cortex mask 17 --positions 68,69,84,85 --fill tokens --out mask.png
    """
    result = workspace(ctx).mask(_image_arg(image), positions=_positions(positions), top_n=top_n, fill=fill, seed=seed, target=target,
                                 extractor=extractor, model=model, out=out)
    if as_json:
        print_json(result)
        return
    table(f"{result.source}: P('{result.class_name}') with {len(result.positions)} tokens masked ({result.fill}; "
          f"{result.chosen_by}) beside {len(result.random_positions)} random ones (seed {result.seed})",
          ["judge", "original", "masked", "random"], [[j.judge, j.original, j.masked, j.random] for j in result.judges])
    console.print(f"masked positions {', '.join(map(str, result.positions))}; tokens {', '.join(map(str, result.tokens))}",
                  highlight=False, soft_wrap=True)
    if result.out:
        console.print(f"wrote {result.out}", highlight=False, soft_wrap=True)
