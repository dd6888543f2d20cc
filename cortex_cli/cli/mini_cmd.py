"""`cortex train-mini` and `cortex mini report`: build and measure the bundled mini model."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.text import Text

from .app import app, command, sub_command, workspace
from .options import AsJson, Quiet, Seed
from .render import console, print_json, deferred_progress, table

mini_app = typer.Typer(help="The bundled mini model: quality report.", no_args_is_help=True)
app.add_typer(mini_app, name="mini")


@command("train-mini")
def train_mini(
    ctx: typer.Context,
    out: Path = typer.Option(None, "--out", help="Where to write config.yaml, model.safetensors, judges (default: the package's bundled/mini)."),
    work_dir: Path = typer.Option(None, "--work-dir", help="Stage checkpoints, for resuming (default: OUT/.work)."),
    vq_steps: int = typer.Option(None, "--vq-steps", help="VQGAN steps (default: the recipe's)."),
    gpt_steps: int = typer.Option(None, "--gpt-steps", help="Prior steps (default: the recipe's)."),
    seed: Seed = 0,  # MiniRecipe's default (tests/cli/test_options.py)
    quiet: Quiet = False,
) -> None:
    """Train the mini model from nothing: VQGAN, class-conditional GPT prior and two judges.

    The committed weights used --seed 0. Interrupted runs resume at the first unfinished stage.
    Takes about 30-40 minutes on 2 CPU cores.

    Example: cortex train-mini --seed 0 --out /tmp/mini
    """
    with deferred_progress("train-mini", quiet) as update:
        report = workspace(ctx).train_mini(out, work_dir=work_dir, seed=seed, vq_steps=vq_steps, gpt_steps=gpt_steps, progress=update)
    console.print(f"wrote the mini model to {report.out_dir} ({', '.join(f'{k} {v:.0f}s' for k, v in report.seconds.items())})",
                  highlight=False, soft_wrap=True)


@sub_command(mini_app, "report")
def mini_report_cmd(
    ctx: typer.Context,
    heldout: int = typer.Option(40, "--heldout-per-concept", help="Held-out mini-world images per concept."),
    generated: int = typer.Option(16, "--generated-per-concept", help="Prior samples per concept for the judges."),
    seed: Seed = 0,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Quality of the bundled mini model: VQGAN PSNR, codebook use, judge accuracy (held-out and generated).

    Example: cortex mini report --json
    """
    with deferred_progress("sampling concepts", quiet or as_json) as update:
        report = workspace(ctx).mini_report(heldout_per_concept=heldout, generated_per_concept=generated, seed=seed, progress=update)
    if as_json:
        print_json(report)
        return
    console.print(f"VQGAN PSNR {report.psnr_db:.2f} dB on {report.heldout_images} held-out images; "
                  f"codebook {report.codebook_used}/{report.codebook_size} used, perplexity {report.perplexity:.1f}")
    rows = [[name, f"{report.judge_heldout_accuracy[name]:.3f}", f"{report.judge_generated_mean[name]:.3f}"] for name in report.judge_heldout_accuracy]
    table("judges", ["judge", "held-out acc", f"generated acc (mean, {report.generated_per_concept}/concept)"], rows)
    concepts = list(next(iter(report.judge_generated_accuracy.values())))
    table("generated accuracy per concept", ["concept", *report.judge_generated_accuracy],
          [[c, *[f"{report.judge_generated_accuracy[j][c]:.2f}" for j in report.judge_generated_accuracy]] for c in concepts])
    for bar, ok in report.bars.items():
        console.print(Text.assemble(("pass " if ok else "FAIL ", "green" if ok else "red"), bar))
