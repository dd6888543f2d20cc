"""`cortex edit`: token-selection optimisation of an image region toward a target concept."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..search import token_selection
from .app import command, workspace
from .options import TARGET_HELP, AsJson, L2Weight, Model, Quiet, Region, Seed, Steps
from .render import console, deferred_progress, print_json, prior_nll_line, table

SHOW_CHANGES = 32  # changed tokens listed in the terminal


@command("edit")
def edit(
    ctx: typer.Context,
    image: Path = typer.Argument(..., help="A PNG written by cortex (its tokens are read from the metadata) or any picture (VQGAN-encoded)."),
    target: str = typer.Option(..., "--target", help=f"{TARGET_HELP} to move the region toward (e.g. 'blue-capped bird')."),
    region_text: Region = ...,
    model: Model = None,
    extractor: Annotated[Optional[str], typer.Option("--extractor", "-e", help="Registered extractor to optimise against (default: ce).")] = None,
    space: str = typer.Option("token", "--space", help="What the optimiser moves: token (Gumbel-Softmax token selection, the paper's) or embedding (baseline: optimise E, snap to nearest tokens)."),
    steps: Steps = 3000,
    lr: float = typer.Option(None, "--lr", help=f"Adam learning rate (default: {token_selection.TOKEN_LR} on the logits of P; {token_selection.EMBEDDING_LR} x std(codebook) for --space embedding)."),
    tau: float = typer.Option(1.0, "--tau", help="Gumbel-Softmax temperature."),
    tau_final: float = typer.Option(None, "--tau-final", help="Anneal tau exponentially to this value by the last step (default: fixed tau)."),
    alpha: L2Weight = token_selection.OptimizeSettings.alpha,
    init: str = typer.Option("source", "--init", help="How the region starts: source (the image's tokens) or random."),
    objective: str = typer.Option(token_selection.OptimizeSettings.objective, "--objective", help="logit (-target logit, the paper's eq. 8; default, best by measurement; a concept: -logsumexp of its members' logits) or log-prob (-log softmax of the target; a concept: -log of its members' summed probability)."),
    seed: Seed = token_selection.OptimizeSettings.seed,
    out: Path = typer.Option(None, "--out", "-o", help="Directory for the edited PNG, snapshots and strip (default: the image's directory)."),
    save_every: int = typer.Option(None, "--save-every", help="Also write a snapshot PNG every N steps (and show them in the strip)."),
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Edit the tokens of an image region so that it expresses a target concept (paper §3.4, Figure 4).

    Searches the whole codebook for the region's tokens that maximise the information extractor's
    target score (hard Gumbel-Softmax samples with straight-through gradients, Adam on the token
    selection matrix), keeping every token outside the region. Writes <image>.edit<ID>-<target>.png
    (with its token grid, so edits chain), optional snapshots, and a strip source -> snapshots ->
    final; prints the extractor's and judges' probabilities before and after, and the changed tokens.
    The edit is stored in the database.

    A named concept as --target (`cortex concepts add red --classes ...`) maximises the concept's score;
    its P(target) is the sum of its members' probabilities.

    Example: cortex edit bird.png --target "blue-capped bird" --region 2:8,6:12 --steps 500 --save-every 100
    """
    with deferred_progress(f"editing toward {target} ({space})", quiet=quiet or as_json) as update:
        result = workspace(ctx).edit(image, target, region_text, model=model, extractor=extractor, space=space, steps=steps, lr=lr, tau=tau,
                                     tau_final=tau_final, alpha=alpha, init=init, objective=objective, seed=seed, out=out,
                                     save_every=save_every, progress=update)
    if as_json:
        print_json(result)
        return
    for notice in result.notices:
        console.print(f"note: {notice}", highlight=False)
    src = result.source_class_name or str(result.source_class)

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    toward = f"concept {result.target_name} ({result.target})" if result.concept is not None else result.target_name
    table(
        f"edit {result.edit_id}: {src} -> {toward}, region {result.region}, {result.method}",
        ["scorer", f"P({src}) before", "after", f"P({result.target_name}) before", "after"],
        [[p.scorer, fmt(p.source_before), fmt(p.source_after), fmt(p.target_before), fmt(p.target_after)] for p in result.probabilities],
    )
    if result.changed:
        shown = ", ".join(f"({c.row},{c.col}) {c.old}->{c.new}" for c in result.changed[:SHOW_CHANGES])
        more = f" (+{len(result.changed) - SHOW_CHANGES} more; --json lists all)" if len(result.changed) > SHOW_CHANGES else ""
        console.print(f"changed {len(result.changed)} tokens in region {result.region}: {shown}{more}", highlight=False)
    else:
        console.print("no token changed (the source tokens were already the optimum found)", highlight=False)
    console.print(f"loss {result.loss_start:.4g} -> {result.loss_end:.4g}", highlight=False)
    realism = prior_nll_line(result, result.target_name)
    if realism:
        console.print(realism, highlight=False, soft_wrap=True)
    console.print(f"wrote {result.output_path} and strip {result.strip_path}", highlight=False)
    if result.snapshot_paths:
        console.print(f"snapshots: {', '.join(str(p) for p in result.snapshot_paths)}", highlight=False)
