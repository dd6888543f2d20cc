"""`cortex demo`: the tour on the bundled mini model."""

from __future__ import annotations

from pathlib import Path

import typer

from ..demo import DEMO_SWEEP_STEPS
from .app import command, workspace
from .options import AsJson, Quiet, Seed
from .render import console, print_json, deferred_progress, table


@command("demo")
def demo(
    ctx: typer.Context,
    out: Path = typer.Option(Path("cortex-demo"), "--out", "-o", help="Directory for the demo's PNGs."),
    concept: str = typer.Option("red-capped bird", "--concept", help="Which mini concept to tour (its paired concept is the edit's target)."),
    seed: Seed = 0,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """The tour, on the bundled mini model (~1 minute on a laptop CPU): generate, index, top tokens, Figure 2, an edit.

    Generates a dozen images of one concept, indexes their saliency, prints the concept's top tokens
    beside the frequency baseline, writes a red-box overlay PNG, and edits one image's most salient
    4x4 token box toward the paired concept (strip PNG: source -> snapshots -> result), and writes
    the concept's token atlas (OUT/atlas/index.html, as `cortex atlas` does).
    Example: cortex demo --out cortex-demo/
    """
    with deferred_progress("demo", quiet=quiet or as_json) as update:
        result = workspace(ctx).demo(out, concept=concept, seed=seed, progress=update)
    if as_json:
        print_json(result)
        return
    top = result.top_tokens
    rows = []
    base = top.baseline or []
    for i in range(max(len(top.rows), len(base))):
        r = top.rows[i] if i < len(top.rows) else None
        b = base[i] if i < len(base) else None
        rows.append([i + 1, r.token if r else "", r.count if r else "", b.token if b else "", b.count if b else ""])
    table(f"'{top.class_name}': salient tokens vs. frequency baseline ({top.images_indexed} images)",
          ["rank", "salient token", "count", "baseline token", "count"], rows)
    console.print(f"overlap {top.overlap}/{len(top.rows)} (Jaccard {top.jaccard:.2f})", highlight=False)
    if result.edit is not None:
        e = result.edit
        judged = [p for p in e.probabilities if p.scorer.startswith("judge:")]
        probs = ", ".join(f"{p.scorer} P({e.target_name}) {p.target_before:.2f} -> {p.target_after:.2f}" for p in judged)
        console.print(f"edit of region {e.region} toward '{e.target_name}': {len(e.changed)} tokens changed; {probs}", highlight=False)
        start = ", ".join(f"{p.scorer} P({e.source_class_name}) {p.source_before:.2f} -> {p.source_after:.2f}" for p in judged
                          if p.source_before is not None and p.source_after is not None)
        if start:
            console.print(f"the source's own class: {start}", highlight=False)
    if result.sweep:
        rates = ", ".join(f"{judge} {share:.0%}" for judge, share in result.sweep.items())
        console.print(f"over all {result.sweep_edits} part-pair directions (one image each, saliency box, {DEMO_SWEEP_STEPS} steps), "
                      f"the judges call the edit the target: {rates}", highlight=False, soft_wrap=True)
    for line in result.lines:
        console.print(line, highlight=False, soft_wrap=True)

