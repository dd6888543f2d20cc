"""`cortex index`, `top-tokens`, `token`, `show`, `explain`, `demo`: the saliency index and its questions."""

from __future__ import annotations

import csv
import dataclasses
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import model_registry
from ..class_subsets import resolve_classes, select_classes
from ..distributed import DistContext, init_from_env
from ..errors import CortexError
from ..attribution import SaliencySettings
from ..demo import DEMO_SWEEP_STEPS, run_demo
from ..explain import explain_png, show_image, show_token
from ..extractors.registry import get_extractor, load_extractor
from ..extractors.subsets import require_classes
from ..indexing import ensure_run, index_class
from ..rankings import token_usage, top_tokens
from .app import command, state
from .options import (SALIENCY, Alpha, AsJson, BatchSize, Baseline, ClassName, Classes, CountedImages, Extractor, ExtractorOfRuns,
                      FirstSeed, Images, Method, Model, Precision, Quiet, Reduce, Samples, Seed, Split, Steps, TopK, TopN)
from .render import console, print_json, progress, table


def _settings(**values) -> SaliencySettings:
    return SaliencySettings(**values).validate()


def _rate(update):
    """Wrap a progress update to show images/s."""
    start = time.perf_counter()
    first: list[int] = []

    def report(done: int, total: int, info: str = "") -> None:
        if not first:
            first.append(done)
        elapsed = time.perf_counter() - start
        rate = (done - first[0]) / elapsed if elapsed > 0 and done > first[0] else 0.0
        update(done, total, info=f"{rate:.1f} img/s" if rate else "")

    return report


@command("index")
def index(
    ctx: typer.Context,
    class_spec: ClassName = None,
    classes: Classes = None,
    model: Model = None,
    extractor: Extractor = "ce",
    split: Split = "train",
    images: Images = 100,
    first_seed: FirstSeed = 0,
    seed: Seed = SALIENCY.seed,
    method: Method = SALIENCY.method,
    samples: Samples = SALIENCY.samples,
    alpha: Alpha = SALIENCY.alpha,
    steps: Steps = SALIENCY.steps,
    baseline: Baseline = SALIENCY.baseline,
    top_n: TopN = SALIENCY.top_n,
    reduce: Reduce = SALIENCY.reduce,
    precision: Precision = SALIENCY.precision,
    batch_size: BatchSize = 16,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Run CORTEX saliency over a class's generated images and store each image's top-n tokens and TSV map.

    Indexes image seeds --first-seed .. +N-1 (N = --images); --seed keys the saliency noise.
    Target = the class's logit of the extractor f_Y; TSV(t) = max over channels of the absolute mean
    gradient over N noisy copies (paper §3.3, --method smoothgrad, the default). --method gradient,
    gradient-x-input or integrated-gradients (Captum; --steps, --baseline) index the same images
    as another run, side by side; parameters a method does not use are ignored.
    Resumable: rerunning the same command skips images already indexed with the same method and
    parameters; results are committed every 512 images or 1 s of work while the next batch computes, so
    a killed run loses at most what was not yet committed. Defaults: the authors' (N=20, alpha=0.2, n=20).

    Under torchrun the seeds are dealt out in blocks of --batch-size (block i to rank (i + class id) % WORLD_SIZE), each
    rank on cuda:LOCAL_RANK or the CPU; the rows are those of one process, and rank 0 prints the totals.

    Example: cortex index --class goldfinch --images 100
    Example: cortex index --classes 'goldfinch,black grouse' --images 100
    Example: cortex index --class goldfinch --method integrated-gradients --baseline codebook-mean
    Example: torchrun --nproc-per-node 8 -m cortex_cli --db postgresql+psycopg://host/cortex index --class all --images 1000
    """
    app_state = state(ctx)
    dist = init_from_env(app_state.device)
    try:
        settings = _settings(method=method, samples=samples, alpha=alpha, steps=steps, baseline=baseline, top_n=top_n, reduce=reduce,
                             precision=precision, seed=seed)
        _index(app_state, dist, class_spec, classes, model, extractor, split, images, first_seed, settings, batch_size, as_json, quiet)
        dist.barrier()  # no rank tears the process group down while another still uses it
    finally:
        dist.destroy()


def _index(app_state, dist: DistContext, class_spec, classes, model, extractor, split, images, first_seed, settings: SaliencySettings,
           batch_size, as_json, quiet) -> None:
    store = dist.main_first(app_state.store)  # rank 0 migrates the database before the others open it
    device = dist.device
    info = model_registry.get_model(store, model)
    if images < 1:
        raise CortexError(f"--images must be >= 1, got {images}")
    targets = select_classes(store, info, class_spec, classes)
    ext_info = get_extractor(store, info, extractor)
    require_classes(ext_info, [c.class_id for c in targets])  # a subset extractor's classes only; before generating anything
    net = load_extractor(ext_info, device)
    # one rank creates the run row; the others find it (insert-or-ignore would also make a race harmless)
    dist.main_first(lambda: ensure_run(store, info, ext_info.id, settings))
    shard = dist.work(batch_size)  # one block = one batch, as a single process would form it
    results = []
    for cls in targets:
        label = f"indexing {cls.name}" + (f" (rank 0's shard of {dist.world_size})" if dist.distributed else "")
        with progress(label, quiet=quiet or as_json or not dist.is_main) as update:
            results.append(index_class(
                store, info, ext_info, cls, split=split, n_images=images, image_seed=first_seed, settings=settings, device=device,
                batch_size=batch_size, progress=_rate(update), extractor=net,
                generation_progress=lambda done, total, info="": update(done, total, info="generating missing images"),
                shard=shard,
            ))
    if dist.distributed:
        results = _merge_index(dist, results)
    if not dist.is_main:
        return
    if as_json:
        print_json(results if len(results) > 1 else results[0])
        return
    for r in results:
        console.print(
            f"{r.model} / {r.class_name} (class {r.class_id}) / {r.split}: indexed {r.added}, already indexed {r.skipped} "
            f"(run {r.run_id}, {r.settings['method']}, extractor {r.extractor}" + (f", {r.images_per_s:.1f} img/s)" if r.added else ")")
            + (f" on {dist.world_size} ranks" if dist.distributed else ""),
            highlight=False, soft_wrap=True,
        )
    if not quiet:
        name = results[0].class_name
        console.print(f"next: cortex top-tokens '{name}' --baseline frequency", highlight=False, soft_wrap=True)


def _merge_index(dist: DistContext, results: list) -> list:
    """The job's per-class results: images/added/skipped summed over ranks, time the slowest rank's."""
    counts = dist.all_reduce_counts([v for r in results for v in (r.images, r.added, r.skipped)])
    seconds = dist.all_reduce_counts([float(r.seconds) for r in results], op="max")
    merged = []
    for i, r in enumerate(results):
        images, added, skipped = (int(v) for v in counts[3 * i:3 * i + 3])
        secs = float(seconds[i])
        merged.append(dataclasses.replace(
            r, images=images, added=added, skipped=skipped, seconds=round(secs, 3),
            images_per_s=round(added / secs, 2) if added and secs > 0 else 0.0,
        ))
    return merged


@command("top-tokens")
def top_tokens_cmd(
    ctx: typer.Context,
    class_spec: str = typer.Argument(None, metavar="CLASS", help="Class id or name (or give --classes instead)."),
    classes: str = typer.Option(None, "--classes", help="Instead of CLASS: several concepts, 'goldfinch,black grouse,11' or @file.txt; one table each (a JSON list with --json)."),
    k: TopK = 100,
    baseline: str = typer.Option(
        None, "--baseline",
        help="Also rank tokens without an extractor over the same images, and show the overlap: 'frequency' "
        "(the paper's: most frequent over all positions) or 'specific' (most specific to the class: smoothed P(class | token)).",
    ),
    images: CountedImages = None,
    extractor: ExtractorOfRuns = None,
    method: str = typer.Option(None, "--method", help="Read the newest run of this attribution method (default: of any; see `cortex index --method`)."),
    run: int = typer.Option(None, "--run", help="Read this saliency run (its run_id in `cortex index --json`) instead of the newest."),
    model: Model = None,
    split: Split = "train",
    as_json: AsJson = False,
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV (one row per rank; baseline columns with --baseline)."),
) -> None:
    """The concept's top-k tokens: those most frequent in its images' top-n saliency sets (T*_concept).

    Counts come from the index (`cortex index`), computed in SQL over exactly one set of images (the
    title says which seeds). Columns: count = occurrences in the per-image top-n sets (the paper's
    Freq), images = images containing it, mean TSV.
    Example: cortex top-tokens goldfinch -k 20 --baseline specific
    Example: cortex top-tokens --classes 'goldfinch,black grouse' -k 10 --json
    """
    app_state = state(ctx)
    store = app_state.store()
    info = model_registry.get_model(store, model)
    if (class_spec is None) == (classes is None):
        raise CortexError("give one concept (cortex top-tokens goldfinch) or --classes 'goldfinch,black grouse' / --classes @file.txt")
    targets = resolve_classes(store, info, classes) if classes is not None else [model_registry.resolve_class(store, info, class_spec)]
    results = [top_tokens(store, info, cls, extractor=extractor, k=k, baseline=baseline, split=split, images=images, run=run, method=method)
               for cls in targets]
    if as_json:
        print_json(results if classes is not None else results[0])
    elif as_csv:
        _top_tokens_csv(results, baseline, with_class=classes is not None)
    else:
        for result in results:
            _top_tokens_table(result, baseline)


def _top_tokens_csv(results, baseline: str | None, with_class: bool) -> None:
    writer = csv.writer(sys.stdout)
    header = ["rank", "token", "count", "n_images", "mean_tsv"] + (["baseline_token", "baseline_count", "baseline_n_images"] if baseline else [])
    writer.writerow((["class_id", "class"] if with_class else []) + header)
    for result in results:
        base = result.baseline or []
        for i in range(max(len(result.rows), len(base))):
            r = result.rows[i] if i < len(result.rows) else None
            row = [i + 1] + ([r.token, r.count, r.n_images, f"{r.mean_tsv:.6g}"] if r else ["", "", "", ""])
            if baseline:
                b = base[i] if i < len(base) else None
                row += [b.token, b.count, b.n_images] if b else ["", "", ""]
            writer.writerow(([result.class_id, result.class_name] if with_class else []) + row)


def _top_tokens_table(result, baseline: str | None) -> None:
    base = result.baseline or []
    title = (f"{result.class_name}: top {len(result.rows)} salient tokens ({result.images_indexed} {result.split} images, "
             f"seeds {result.image_seeds}; run {result.run_id}, {result.extractor})")
    if baseline:
        rows = []
        for i in range(max(len(result.rows), len(base))):
            r = result.rows[i] if i < len(result.rows) else None
            b = base[i] if i < len(base) else None
            rows.append([i + 1, r.token if r else "", r.count if r else "", r.n_images if r else "", r.mean_tsv if r else "",
                         b.token if b else "", b.count if b else ""])
        table(title, ["rank", "token", "count", "images", "mean TSV", f"{baseline} token", "its count"], rows)
        against = f", against {result.contrast_images} images of {result.contrast_classes} classes" if result.contrast_classes else ""
        console.print(
            f"overlap with the {baseline} baseline (same {result.baseline_images} images{against}): {result.overlap} of "
            f"{len(result.rows)} tokens ({result.overlap_fraction:.0%}), Jaccard {result.jaccard:.3f}", highlight=False, soft_wrap=True,
        )
    else:
        table(title, ["rank", "token", "count", "images", "mean TSV"], [[r.rank, r.token, r.count, r.n_images, r.mean_tsv] for r in result.rows])


@command("token")
def token_cmd(
    ctx: typer.Context,
    token: int = typer.Argument(..., help="Codebook index (0..K-1)."),
    top: int = typer.Option(20, "--top", help="Classes to list."),
    images: CountedImages = None,
    extractor: ExtractorOfRuns = None,
    model: Model = None,
    split: Split = "train",
    as_json: AsJson = False,
) -> None:
    """Which classes use a token most: as a salient token (index) and as a plain occurrence (all positions).

    Both views count the same images: those the run indexed (without an index, every stored image).
    Ranks: 'class rank' orders the classes; 'token rank' is the token's rank inside that class's own list.
    Example: cortex token 42 --top 10
    """
    app_state = state(ctx)
    store = app_state.store()
    info = model_registry.get_model(store, model)
    usage = token_usage(store, info, token, top=top, extractor=extractor, split=split, images=images)
    if as_json:
        print_json(usage)
        return
    cols = ["class rank", "class", "count", "images", "token rank"]
    if usage.salient:
        table(f"token {token} as a salient token (run {usage.run_id}, {usage.extractor}; {usage.images_counted} images)", cols,
              [[u.class_rank, f"{u.class_name} ({u.class_id})", u.count, u.n_images, u.token_rank] for u in usage.salient])
    else:
        console.print(f"token {token} is not salient in any indexed image" + ("" if usage.run_id else " (nothing indexed yet; run `cortex index --class <class>`)"), highlight=False)
    if usage.occurrence:
        table(f"token {token} as a plain occurrence (the same {usage.images_counted} {usage.split} images)", cols,
              [[u.class_rank, f"{u.class_name} ({u.class_id})", u.count, u.n_images, u.token_rank] for u in usage.occurrence])
    else:
        console.print(f"token {token} occurs in none of the {usage.images_counted} counted {usage.split} images", highlight=False)


def _print_explain(result) -> None:
    table(
        f"{result.source}: top {len(result.top)} tokens for '{result.class_name}' (class {result.class_id}, target: {result.target}; "
        f"tokens from {result.tokens_from}; TSV {result.tsv_from}, extractor {result.extractor})",
        ["rank", "token", "row", "col", "TSV"], [[t.rank, t.token, t.row, t.col, t.tsv] for t in result.top],
    )
    if result.out:
        console.print(f"wrote {result.out}", highlight=False, soft_wrap=True)


@command("show")
def show(
    ctx: typer.Context,
    image: str = typer.Argument(None, help="A stored image id, or a PNG written by cortex."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the figure (PNG)."),
    top_n: int = typer.Option(5, "--top-n", help="Tokens to box (highest TSV first)."),
    class_spec: str = typer.Option(None, "--class", "-c", help="With --token: draw images of this class."),
    token: int = typer.Option(None, "--token", "-t", help="With --class: box this token wherever it is salient (paper Figure 5)."),
    limit: int = typer.Option(12, "--limit", help="With --class/--token: at most this many images."),
    extractor: Annotated[Optional[str], typer.Option("--extractor", "-e", help="Use runs of this extractor (default: newest of any; 'ce' when computing).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Registered model (default: mini, or the PNG's).")] = None,
    seed: Seed = SALIENCY.seed,
    as_json: AsJson = False,
) -> None:
    """Draw red boxes on an image's top-n TSV tokens (paper Figure 2), or a class's images with one token boxed (Figure 5).

    IMAGE is a stored image id (its indexed TSV map is used, else it is computed; target = its class's
    logit) or a cortex PNG (computed as `cortex explain` does).
    Examples: cortex show 17 --top-n 5 --out fig2.png ;  cortex show --class goldfinch --token 42 --out fig5.png
    """
    app_state = state(ctx)
    store = app_state.store()
    device = app_state.torch_device()
    if (class_spec is None) != (token is None):
        raise CortexError("--class and --token go together: cortex show --class C --token T --out fig.png")
    if class_spec is not None:
        if image is not None:
            raise CortexError("give either IMAGE or --class/--token, not both")
        info = model_registry.get_model(store, model)
        cls = model_registry.resolve_class(store, info, class_spec)
        result = show_token(store, info, cls, token, out, extractor_name=extractor, limit=limit, device=device)
        if as_json:
            print_json(result)
            return
        console.print(
            f"token {result.token} is salient in {result.images_with_token} indexed '{result.class_name}' images; "
            f"drew {len(result.image_ids)} in {result.out}", highlight=False, soft_wrap=True,
        )
        return
    if image is None:
        raise CortexError("give a stored image id or a cortex PNG, or --class C --token T")
    if image.isdigit():
        info = model_registry.get_model(store, model)
        result = show_image(store, info, int(image), extractor_name=extractor, top_n=top_n, out=out, device=device,
                            settings=SaliencySettings(seed=seed))
    else:
        result = explain_png(store, Path(image), model_name=model, extractor_name=extractor, top_n=top_n,
                             settings=SaliencySettings(seed=seed), device=device, out=out)
    if as_json:
        print_json(result)
        return
    _print_explain(result)


@command("explain")
def explain(
    ctx: typer.Context,
    image: Path = typer.Argument(..., help="A PNG written by cortex (tokens in its metadata) or any picture (encoded by the VQGAN)."),
    top_n: int = typer.Option(10, "--top-n", help="Tokens to list and box."),
    out: Path = typer.Option(None, "--out", "-o", help="Also write the picture with its top-n tokens boxed (PNG)."),
    extractor: Extractor = "ce",
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Registered model (default: the PNG's, else mini).")] = None,
    seed: Seed = SALIENCY.seed,
    method: Method = SALIENCY.method,
    samples: Samples = SALIENCY.samples,
    alpha: Alpha = SALIENCY.alpha,
    steps: Steps = SALIENCY.steps,
    baseline: Baseline = SALIENCY.baseline,
    reduce: Reduce = SALIENCY.reduce,
    precision: Precision = SALIENCY.precision,
    as_json: AsJson = False,
) -> None:
    """Saliency of one picture, printed (and drawn with --out); the index is not touched.

    Target = the logit of the class in the PNG's metadata, else of the class the extractor predicts.
    Example: cortex explain samples/goldfinch_train_0.png --top-n 5 --out explained.png
    Example: cortex explain samples/goldfinch_train_0.png --method gradient-x-input
    """
    app_state = state(ctx)
    store = app_state.store()
    settings = _settings(method=method, samples=samples, alpha=alpha, steps=steps, baseline=baseline, reduce=reduce, precision=precision,
                         seed=seed)
    result = explain_png(store, image, model_name=model, extractor_name=extractor, top_n=top_n, settings=settings,
                         device=app_state.torch_device(), out=out)
    if as_json:
        print_json(result)
        return
    _print_explain(result)


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
    app_state = state(ctx)
    store = app_state.store()
    with progress("demo", quiet=quiet or as_json) as update:
        result = run_demo(store, out, app_state.torch_device(), progress=update, concept=concept, seed=seed)
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
