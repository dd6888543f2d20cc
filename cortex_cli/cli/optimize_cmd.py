"""`cortex optimize`: input-independent token search for a concept (paper §3.4)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..search import concept_search as optimize, token_selection
from .app import command, workspace
from .options import AsJson, L2Weight, Model, Quiet, Seed, Steps
from .render import console, deferred_progress, print_json, prior_nll_line, table

SHOW_TOKENS = 12  # T* tokens listed in the terminal


@command("optimize")
def optimize_cmd(
    ctx: typer.Context,
    class_spec: str = typer.Option(..., "--class", "-c", help="Class id or name, or a named concept, whose extractor score is maximised (e.g. 'red-capped bird')."),
    region_text: str = typer.Option("all", "--region", "-r", help="Token rectangle that may change: all (default), R0:R1,C0:C1 (half-open rows then columns) or R,C."),
    init: str = typer.Option(optimize.RANDOM, "--init", help="Start: random (near-uniform logits of P), noise (a uniformly random token grid) or a PNG (its tokens)."),
    restarts: int = typer.Option(optimize.DEFAULT_RESTARTS, "--restarts", "-R", help="Independent optimisations; the best final extractor objective wins, all are reported."),
    steps: Steps = optimize.DEFAULT_STEPS,
    model: Model = None,
    extractor: str = typer.Option("ce", "--extractor", "-e", help="Registered extractor f_Y to maximise (and whose saliency index is compared)."),
    k: int = typer.Option(optimize.DEFAULT_K, "-k", help="Compare with the class's top-k salient tokens (`cortex top-tokens`)."),
    lr: float = typer.Option(None, "--lr", help=f"Adam learning rate on the logits of P (default {token_selection.TOKEN_LR})."),
    tau: float = typer.Option(1.0, "--tau", help="Gumbel-Softmax temperature."),
    tau_final: float = typer.Option(None, "--tau-final", help="Anneal tau exponentially to this value by the last step (default: fixed tau)."),
    alpha: L2Weight = token_selection.OptimizeSettings.alpha,
    objective: str = typer.Option(token_selection.OptimizeSettings.objective, "--objective", help="logit (-target logit, the paper's eq. 8; a concept: logsumexp of its members' logits) or log-prob (a concept: log of its members' summed probability)."),
    seed: Seed = token_selection.OptimizeSettings.seed,
    out: Path = typer.Option(None, "--out", "-o", help="Directory for the PNG and strip (default: $CORTEX_HOME/concept-searches/<model>)."),
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Find the tokens that best express a concept, from no input at all (paper §3.4, eq. 7-9).

    Optimises the token selection matrix P over the region (hard Gumbel-Softmax samples,
    straight-through gradients, Adam) to maximise the extractor's score of the class, from random
    logits, a random token grid or an image's tokens; positions outside the region keep the start.
    Every restart is scored at its final step and stored; the best extractor objective wins.
    T*_concept = the distinct argmax tokens of the region (eq. 9), by how many positions hold them,
    compared with the class's salient tokens from `cortex index`. Writes the decoded grid (a PNG
    with its tokens) and a strip over the steps. Rerunning the same command reuses stored restarts.

    --seed keys the restarts' noise (restart seeds derive from it and the search).
    A named concept as --class maximises the concept's score; its P is its members' summed probability.

    Example: cortex optimize --class "red-capped bird" --restarts 3 --steps 300
    """
    with deferred_progress(f"searching {class_spec}", quiet=quiet or as_json) as update:
        result = workspace(ctx).optimize(class_spec, region=region_text, init=init, restarts=restarts, steps=steps, model=model,
                                         extractor=extractor, k=k, lr=lr, tau=tau, tau_final=tau_final, alpha=alpha, objective=objective,
                                         seed=seed, out=out, progress=update)
    if as_json:
        print_json(result)
        return
    for notice in result.notices:
        console.print(f"note: {notice}", highlight=False, soft_wrap=True)
    judges = sorted({name for r in result.restarts for name in r.judges})
    score = "logit" if result.objective_kind == "logit" else "log P"
    name = f"concept {result.class_name} ({result.target})" if result.concept is not None else result.class_name
    table(
        f"{name}: region {result.region}, init {result.init}, {result.steps} steps",
        ["restart", score, "P ext", *[f"P {j}" for j in judges], "tokens", "stored"],
        [[f"{r.restart}{' *' if r.restart == result.best_restart else ''}", f"{r.objective:.3g}", f"{r.p_target:.3f}",
          *[f"{r.judges[j]:.3f}" if j in r.judges else "-" for j in judges], r.n_distinct, "now" if r.computed else "before"]
         for r in result.restarts],
    )
    shown = ", ".join(f"{e.token} ({e.positions})" for e in result.t_star[:SHOW_TOKENS])
    more = f", +{len(result.t_star) - SHOW_TOKENS} more" if len(result.t_star) > SHOW_TOKENS else ""
    console.print(f"T*_concept (restart {result.best_restart}, token (positions)): {shown}{more}", highlight=False, soft_wrap=True)
    c = result.comparison
    if c is None:
        console.print(f"saliency comparison: none; {result.hint}", highlight=False, soft_wrap=True)
    else:
        console.print(
            f"saliency top-{c.k} ({c.extractor}, run {c.run_id}, {c.images_indexed} images): overlap {c.overlap} of "
            f"{min(c.k, c.n_optimised)} (chance {c.chance_overlap:.1f})" + (f": {', '.join(map(str, c.overlap_tokens))}" if c.overlap_tokens else ""),
            highlight=False, soft_wrap=True,
        )
        console.print(
            f"optimised tokens among the salient top-{c.k}: {c.optimised_in_salient} of {c.n_optimised}, "
            f"holding {c.positions_in_salient:.0%} of the region's positions", highlight=False, soft_wrap=True,
        )
    realism = prior_nll_line(result, result.class_name, start="start")
    if realism:
        console.print(realism, highlight=False, soft_wrap=True)
    console.print(f"wrote {result.output_path} and strip {result.strip_path}", highlight=False, soft_wrap=True)
