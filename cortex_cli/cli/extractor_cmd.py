"""`cortex train-extractor` and `cortex test-extractor`: the information extractors f_Y and Table 1."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..extractors.training import TrainConfig
from .app import command, workspace
from .options import AsJson, Model, Quiet, Seed
from .render import console, deferred_progress, print_json, table

TRAIN = TrainConfig()  # the defaults every preset shares (seeds)


@command("train-extractor")
def train_extractor_cmd(
    ctx: typer.Context,
    arch: str = typer.Option(..., "--arch", "-a", help="ce (CNN-based, appendix A.1.1), re (ResNet-based with SE blocks, our reading of A.1.2) or re-authors (the RE of the authors' released code)."),
    model: Model = None,
    name: str = typer.Option(None, "--name", help="Name to register it under (default: the arch, 'ce' or 're'; required with --classes or --concept)."),
    classes: str = typer.Option(None, "--classes", help="Train on these classes only, 'goldfinch,black grouse,11' or @file.txt (one per line); the head gets one output per class (default: every class)."),
    concept: str = typer.Option(None, "--concept", help="A binary extractor for this named concept (`cortex concepts add`): its members' images vs as many of the other classes' (balanced); 2 outputs, not-Y and Y."),
    epochs: int = typer.Option(None, "--epochs", help="Epochs (default: 80; mini: 30)."),
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", "-b", help="Batch size (default: 256; mini: 64).")] = None,
    lr: float = typer.Option(None, "--lr", help="Adam learning rate (default: 1e-3)."),
    weight_decay: float = typer.Option(None, "--weight-decay", help="Adam weight decay (default: 1e-4)."),
    step_size: int = typer.Option(None, "--step-size", help="StepLR: decay the lr every N epochs (default: 20; mini: 10)."),
    gamma: float = typer.Option(None, "--gamma", help="StepLR decay factor (default: 0.1)."),
    train_per_class: int = typer.Option(None, "--train-per-class", help="Generated training images per class (default: 1000; mini: 300)."),
    val_per_class: int = typer.Option(None, "--val-per-class", help="Validation images per class (default: 300; mini: 50)."),
    test_per_class: int = typer.Option(None, "--test-per-class", help="Test images per class (default: 50)."),
    width: int = typer.Option(None, "--width", help="Conv channels (default: 512; mini: 64)."),
    fc_width: int = typer.Option(None, "--fc-width", help="Hidden FC width (default: 4096 (ce) / 2048 (re); mini: 512 / 256)."),
    seed: Seed = TRAIN.seed,
    first_seed: Annotated[int, typer.Option("--first-seed", help="First image seed of every split (CE and RE share images by default).")] = TRAIN.data_seed,
    precision: str = typer.Option(TRAIN.precision, "--precision", help="Training precision: fp32, or bf16 (autocast around forward and loss; faster on bf16 hardware; a run of its own)."),
    restart: bool = typer.Option(False, "--restart", help="Discard an interrupted or finished run of this name and start over."),
    bundle: bool = typer.Option(False, "--bundle", help="Also write extractor_<name>.safetensors (fp16) + .json into the package's bundled/mini/ (maintainers: ships it as the default)."),
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Train an information extractor on the model's own generated images and register it.

    The input is the token-based embedding E (codebook vectors of each generated token grid,
    computed on the fly). Missing train/val/test images are generated first (`cortex generate`
    rows, image seeds --first-seed ..). Recipe (paper A.1.3): Adam, cross-entropy, StepLR; the
    epoch with the best validation accuracy is kept. The mini model gets a smaller preset.

    Resumable: the run state is saved after every epoch in $CORTEX_HOME/extractors/<model>/<name>/;
    after Ctrl-C or a kill, rerun the same command to continue from the last finished epoch.

    Under torchrun: DistributedDataParallel, each global batch split between the ranks (same global
    batch size as one process); rank 0 generates missing images, checkpoints, and registers the result.

    With --classes the extractor learns only those classes (the paper's Table 3 uses 10 bird classes);
    commands that load it still speak the model's class ids, and refuse a class outside the subset.

    With --concept NAME it learns Y vs not-Y (paper §3.2): per split, --train-per-class (val, test)
    images of each member class, and as many images of the model's other classes, spread evenly over
    them. `cortex index --class NAME --extractor <it>` then explains its log-odds (target 'binary').

    Example: cortex train-extractor --arch ce
    Example: cortex train-extractor --model cin --arch ce --classes @birds.txt --name birds-ce
    Example: cortex train-extractor --arch ce --concept red --name red-ce
    Example: torchrun --nproc-per-node 8 -m cortex_cli --db postgresql+psycopg://host/cortex train-extractor --arch re
    """
    ws = workspace(ctx)
    label = f"training {name or arch}" + (f" ({ws.world_size} ranks)" if ws.world_size > 1 else "")
    with deferred_progress(label, quiet=quiet or as_json or not ws.is_main) as update:
        trained = ws.train_extractor(
            arch, model=model, name=name, classes=classes, concept=concept, restart=restart, bundle=bundle, precision=precision,
            progress=update, epochs=epochs,
            batch_size=batch_size, lr=lr, weight_decay=weight_decay, step_size=step_size, gamma=gamma, train_per_class=train_per_class,
            val_per_class=val_per_class, test_per_class=test_per_class, width=width, fc_width=fc_width, seed=seed, data_seed=first_seed,
        )
    if not ws.is_main:
        return
    if as_json:
        print_json(trained)
        return
    result = trained.result
    info = result.info
    test = info.metrics.get("test", {})
    if result.resumed_from_epoch is not None:
        console.print(f"resumed after epoch {result.resumed_from_epoch}", highlight=False)
    covers = f", {len(info.config.class_ids)} classes" if info.config.class_ids else ""
    if info.config.concept is not None:
        console.print(
            f"{trained.model} / {info.name} ({info.config.arch}, concept {info.config.concept!r} vs the other classes): "
            f"best epoch {result.best_epoch}, val accuracy {result.best_val_acc:.3f}, test accuracy {test.get('binary', float('nan')):.3f} "
            f"({info.config.concept} {test.get('y', float('nan')):.3f}, other {test.get('not_y', float('nan')):.3f}; "
            f"{info.metrics.get('n_test', 0)} images)",
            highlight=False, soft_wrap=True,
        )
    else:
        console.print(
            f"{trained.model} / {info.name} ({info.config.arch}{covers}): "
            f"best epoch {result.best_epoch}, val top-1 {result.best_val_acc:.3f}, "
            f"test top-1 {test.get('top1', float('nan')):.3f}, top-5 {test.get('top5', float('nan')):.3f}",
            highlight=False, soft_wrap=True,
        )
    console.print(f"checkpoint {info.ckpt_path}", highlight=False, soft_wrap=True)
    if trained.bundled:
        console.print(f"bundled as {trained.bundled[0]} and {Path(trained.bundled[1]).name}", highlight=False, soft_wrap=True)


@command("test-extractor")
def test_extractor_cmd(
    ctx: typer.Context,
    model: Model = None,
    per_class: int = typer.Option(None, "--per-class", help="Test images per class (default: each extractor's training setting, 50)."),
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """The paper's Table 1: top-1/3/5/10 accuracy of every registered extractor on the test split.

    Test images are the model's generated `test` images (missing ones are generated first). An
    extractor trained with --classes is tested on its own classes' images, ranking only among them. An
    extractor trained with --concept has no top-k: its binary accuracy on its concept's balanced test
    split (members' images vs as many of the other classes') is printed below the table.

    Example: cortex test-extractor --json
    """
    with deferred_progress("test images", quiet=quiet or as_json) as update:  # a missing extractor is one line, with no bar
        tests = workspace(ctx).test_extractors(model=model, per_class=per_class, progress=update)
    if as_json:
        print_json(tests)
        return
    scores = [s for s in tests.extractors if not s.concept]
    rows = [[s.name, s.arch, len(s.classes) or "all", s.n_images] + [100 * s.accuracy[k] for k in ("top1", "top3", "top5", "top10")]
            for s in scores]
    if rows:
        table(f"Table 1: extractor accuracy (%) on {tests.model} test images", ["extractor", "arch", "classes", "images", "top-1", "top-3", "top-5", "top-10"], rows)
    for s in tests.extractors:
        if s.concept:
            console.print(f"{s.name} ({s.arch}) is a binary extractor for concept {s.concept!r} ({', '.join(s.classes)} vs the other classes): "
                          f"test accuracy {100 * s.accuracy['binary']:.2f}% on {s.n_images} images "
                          f"({s.concept} {100 * s.accuracy['y']:.2f}%, other {100 * s.accuracy['not_y']:.2f}%)",
                          highlight=False, soft_wrap=True)
        elif s.classes:
            console.print(f"{s.name} covers {len(s.classes)} classes (its accuracy is among them): {', '.join(s.classes)}",
                          highlight=False, soft_wrap=True)
