"""`cortex explain` and `cortex show`: one image's salient tokens, printed and drawn (paper Figures 2 and 5)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..core.errors import CortexError
from .app import command, workspace
from ..models.targets import DEFAULT_RULE
from .options import SALIENCY, AsJson, ConceptScoreRule, ExplainTarget, Extractor, Noise, SaliencyOptions, Seed, saliency_options
from .render import console, print_json, table


def _print_explain(result) -> None:
    what = (f"concept '{result.concept}' (score {result.target_key}" if result.concept is not None
            else f"'{result.class_name}' (class {result.class_id}")
    table(
        f"{result.source}: top {len(result.top)} tokens for {what}, target: {result.target}; "
        f"tokens from {result.tokens_from}; TSV {result.tsv_from}, extractor {result.extractor})",
        ["rank", "token", "row", "col", "TSV"], [[t.rank, t.token, t.row, t.col, t.tsv] for t in result.top],
    )
    if result.out:
        console.print(f"wrote {result.out}", highlight=False, soft_wrap=True)


@command("show")
def show(
    ctx: typer.Context,
    image: str = typer.Argument(None, help="A stored image id, or a PNG written by cortex."),
    out: Path = typer.Option(None, "--out", "-o", help="Where to write the figure (PNG); with IMAGE it may be left out (the tokens only)."),
    top_n: int = typer.Option(5, "--top-n", help="Tokens to box (highest TSV first)."),
    class_spec: str = typer.Option(None, "--class", "-c", help="With --token: draw images of this class or named concept."),
    token: int = typer.Option(None, "--token", "-t", help="With --class: box this codebook token wherever it is salient (paper Figure 5)."),
    limit: int = typer.Option(12, "--limit", help="With --class/--token: at most this many images."),
    extractor: Annotated[Optional[str], typer.Option("--extractor", "-e", help="Use runs of this extractor (default: newest of any; 'ce' when computing).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Registered model (default: mini, or the PNG's).")] = None,
    target: ExplainTarget = None,
    score: ConceptScoreRule = DEFAULT_RULE,
    seed: Seed = SALIENCY.seed,
    noise: Noise = SALIENCY.noise,
    as_json: AsJson = False,
) -> None:
    """Draw red boxes on an image's top-n TSV tokens (paper Figure 2), or a class's images with one token boxed (Figure 5).

    IMAGE is a stored image id (its indexed TSV map is used, else it is computed; target = its class's
    logit) or a cortex PNG (computed as `cortex explain` does). --target explains a class or a named
    concept instead (a concept's map is read from its own index run, else computed).
    Examples: cortex show 17 --top-n 5 --out fig2.png ;  cortex show --class goldfinch --token 42 --out fig5.png ;
    cortex show 17 --target red --out red.png
    """
    ws = workspace(ctx)
    if (class_spec is None) != (token is None):
        raise CortexError("--class and --token go together: cortex show --class C --token T --out fig.png")
    if class_spec is not None:
        if image is not None:
            raise CortexError("give either IMAGE or --class/--token, not both")
        if target is not None:
            raise CortexError("--target goes with IMAGE; with --token, --class names the class or concept")
        if out is None:
            raise CortexError("--class/--token draws a figure: give --out fig.png")
        result = ws.show_token(class_spec, token, out, limit=limit, extractor=extractor, model=model)
        if as_json:
            print_json(result)
            return
        of = f"concept '{result.concept}'" if result.concept is not None else f"'{result.class_name}'"
        console.print(
            f"token {result.token} is salient in {result.images_with_token} indexed {of} images; "
            f"drew {len(result.image_ids)} in {result.out}", highlight=False, soft_wrap=True,
        )
        return
    if image is None:
        raise CortexError("give a stored image id or a cortex PNG, or --class C --token T")
    result = ws.show(int(image) if image.isdigit() else Path(image), out, top_n=top_n, extractor=extractor, model=model, seed=seed,
                     noise=noise, target=target, score=score)
    if as_json:
        print_json(result)
        return
    _print_explain(result)


@command("explain")
@saliency_options(top_n=False)  # its --top-n is the tokens it lists
def explain(
    ctx: typer.Context,
    image: Path = typer.Argument(..., help="A PNG written by cortex (tokens in its metadata) or any picture (encoded by the VQGAN)."),
    top_n: int = typer.Option(10, "--top-n", help="Tokens to list and box."),
    out: Path = typer.Option(None, "--out", "-o", help="Also write the picture with its top-n tokens boxed (PNG)."),
    extractor: Extractor = "ce",
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Registered model (default: the PNG's, else mini).")] = None,
    saliency: SaliencyOptions = None,  # --seed .. --noise
    target: ExplainTarget = None,
    score: ConceptScoreRule = DEFAULT_RULE,
    as_json: AsJson = False,
) -> None:
    """Saliency of one picture, printed (and drawn with --out); the index is not touched.

    Target = the logit of the class in the PNG's metadata, else of the class the extractor predicts;
    --target names another class, or a named concept (its --score, as `cortex index` explains it).
    Example: cortex explain samples/goldfinch_train_0.png --top-n 5 --out explained.png
    Example: cortex explain samples/goldfinch_train_0.png --method gradient-x-input
    Example: cortex explain samples/goldfinch_train_0.png --target red
    """
    result = workspace(ctx).explain(image, top_n=top_n, out=out, extractor=extractor, model=model, target=target, score=score, **saliency)
    if as_json:
        print_json(result)
        return
    _print_explain(result)
