"""`cortex train-mini` and `cortex mini report`: build and measure the bundled mini model."""

from __future__ import annotations

from pathlib import Path

import typer

from ..generation import default_sampler
from ..model_registry import BUNDLED_DIR, MINI_NAME, get_model, load_model
from .app import app, command, state, sub_command
from .options import AsJson, Quiet, Seed
from .render import console, print_json, progress, table

mini_app = typer.Typer(help="The bundled mini model: quality report.", no_args_is_help=True)
app.add_typer(mini_app, name="mini")


@command("train-mini")
def train_mini(
    ctx: typer.Context,
    out: Path = typer.Option(None, "--out", help="Where to write config.yaml, model.safetensors, judges (default: the package's bundled/mini)."),
    work_dir: Path = typer.Option(None, "--work-dir", help="Stage checkpoints, for resuming (default: OUT/.work)."),
    vq_steps: int = typer.Option(None, "--vq-steps", help="VQGAN steps (default: the recipe's)."),
    gpt_steps: int = typer.Option(None, "--gpt-steps", help="Prior steps (default: the recipe's)."),
    seed: Seed = 0,  # MiniRecipe's default (tests/cli/test_options.py), without importing it at start-up
    quiet: Quiet = False,
) -> None:
    """Train the mini model from nothing: VQGAN, class-conditional GPT prior and two judges.

    The committed weights used --seed 0. Interrupted runs resume at the first unfinished stage.
    Takes about 30-40 minutes on 2 CPU cores.

    Example: cortex train-mini --seed 0 --out /tmp/mini
    """
    # deliberate lazy import: the recipe's module pulls in the judges and torchvision (~2 s of every cortex start)
    from ..miniworld.training import MiniRecipe, build_mini

    recipe = MiniRecipe(seed=seed)
    if vq_steps:
        recipe.vq_steps = vq_steps
    if gpt_steps:
        recipe.gpt_steps = gpt_steps
    out_dir = out or BUNDLED_DIR / MINI_NAME
    bars = {}

    def stage(name):
        bar = bars.setdefault(name, progress(f"train {name}", quiet))
        update = bar.__enter__()
        def step(done, total, info=""):
            update(done, total, info)
            if done == total:
                bar.__exit__(None, None, None)
        return step

    report = build_mini(out_dir, recipe, work_dir=work_dir, progress=stage)
    console.print(f"wrote the mini model to {report.out_dir} ({', '.join(f'{k} {v:.0f}s' for k, v in report.seconds.items())})")


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
    # deliberate lazy imports: the judges pull in torchvision (~2 s), which no other command's start-up should pay
    from ..judges import mini_judges
    from ..miniworld.report import mini_report

    st = state(ctx)
    device = st.torch_device()
    vqgm = load_model(get_model(st.store(), MINI_NAME), device)
    with progress("sampling concepts", quiet or as_json) as update:
        report = mini_report(vqgm, mini_judges(device), heldout_per_concept=heldout, generated_per_concept=generated,
                             sampler=default_sampler(vqgm), seed=seed, progress=update)
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
        console.print(("[green]pass[/] " if ok else "[red]FAIL[/] ") + bar)
