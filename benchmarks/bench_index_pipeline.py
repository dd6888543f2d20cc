"""The index pipeline behind a fast device: how much of a 2,000 images/s producer `cortex index` keeps.

Drives the real `indexing.index_class` (token loads, embedding, attribution, top-n, the writer thread,
the bulk write path and the run's counts) over stored images of the bundled mini model, with a
synthetic extractor paced to RATE images/s: its forward waits on a schedule, releasing the GIL as a
GPU kernel would, so the device side costs this CPU what a GPU's would (the host work around it is
real). Method `gradient` (one pass per batch; SmoothGrad's N noise draws would make the CPU, not the
database, the bound here). In one process, each pass into a fresh run of the same images:
- producer: the pipeline with the database writes replaced by nothing; the synthetic device's pace is
  first calibrated so that this pass delivers RATE images/s (host work included);
- pipeline: as `cortex index` runs, writes overlapping compute;
- serial: each batch written in its own transaction before the next is computed (the loop before
  the writer thread; same bulk path), for reference.
`kept` = pipeline / RATE and pipeline / producer.

    python benchmarks/bench_index_pipeline.py [--backend sqlite|postgresql] [--images 8192] [--rate 2000] [--batch 256]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from cortex_cli.index import writer as index_writer, build as indexing
from cortex_cli.models import registry as model_registry
from cortex_cli.images.generation import _store_batch, default_sampler
from cortex_cli.attribution import SaliencySettings
from cortex_cli.store.database import open_store
from cortex_cli.store.extractors import upsert_extractor
from cortex_cli.store.index import write_index


class PacedExtractor(nn.Module):
    """Logits = mean-pooled embedding @ W, delivered no faster than `rate` images/s (a device that fast)."""

    def __init__(self, d: int, classes: int, rate: float):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(d, classes, generator=torch.Generator().manual_seed(0)) / d ** 0.5,
                                   requires_grad=False)
        self.rate = rate
        self.ready_at = 0.0

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        now = time.perf_counter()
        self.ready_at = max(self.ready_at, now) + len(e) / self.rate  # the device is busy for len(e)/rate seconds
        time.sleep(max(0.0, self.ready_at - now))
        return e.float().mean(dim=(2, 3)) @ self.weight


class SerialWriter:
    """The loop before the writer thread: every batch in its own transaction, before the next batch is computed."""

    def __init__(self, store, run_id, policy=None, on_commit=None):
        self.store, self.run_id, self.on_commit = store, run_id, on_commit

    def put(self, rows) -> None:
        write_index(self.store, self.run_id, [rows])
        if self.on_commit:
            self.on_commit(len(rows))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        return False


@contextmanager
def _mode(mode: str):
    """Patch the pipeline for one pass: 'producer' discards writes, 'serial' writes inline, 'pipeline' is untouched."""
    saved = (index_writer.write_index, indexing.IndexWriter)
    if mode == "producer":
        index_writer.write_index = lambda store, run_id, parts: set()
    elif mode == "serial":
        indexing.IndexWriter = SerialWriter
    try:
        yield
    finally:
        index_writer.write_index, indexing.IndexWriter = saved


def store_images(store, model, cls, n: int, batch: int = 512) -> None:
    """n random grids of the class (seeds 0..n-1, the default sampler's label) stored as generation would."""
    label = default_sampler(model_registry.load_model(model)).label()
    gen = torch.Generator().manual_seed(cls.class_id)
    for start in range(0, n, batch):
        seeds = list(range(start, min(n, start + batch)))
        _store_batch(store, model, cls, "train", label, seeds, torch.randint(0, model.n_embed, (len(seeds), model.grid, model.grid), generator=gen))


def bench(url: str, images: int, rate: float, batch: int, repeats: int) -> dict:
    store = open_store(url)
    model_registry.ensure_bundled(store)
    model = model_registry.get_model(store, "mini")
    cls = model_registry.classes(store, model)[0]
    store_images(store, model, cls, images)
    d = model_registry.load_model(model).codebook.shape[1]
    torch.set_num_threads(1)  # one core computes; the other is the database's (the server or SQLite's writer)
    rates: dict[str, list[float]] = {"producer": [], "pipeline": [], "serial": []}
    settings = SaliencySettings(method="gradient", top_n=20)
    passes = iter(range(10**6))

    def run(mode: str, pace: float, n: int) -> float:
        ext = upsert_extractor(store, model.id, f"synthetic-{next(passes)}", arch="synthetic", hparams="{}", ckpt_path="",
                               ckpt_sha256="0" * 64, metrics="{}")  # a fresh run each pass: its own extractor
        with _mode(mode):
            result = indexing.index_class(store, model, ext, cls, n_images=n, settings=settings, batch_size=batch,
                                          extractor=PacedExtractor(d, model.n_classes, pace))
        assert result.added == n, result
        return n / result.seconds

    # the device's pace that makes the producer (host work included, writes discarded) deliver `rate` images/s
    pace = rate
    for _ in range(4):
        produced = run("producer", pace, min(images, 8 * batch))
        if abs(produced - rate) < 0.02 * rate:
            break
        pace *= rate / produced
    for _ in range(repeats):
        for mode in rates:
            rates[mode].append(run(mode, pace, images))
    store.close()
    found = {mode: round(statistics.median(values)) for mode, values in rates.items()}
    return {
        "images": images, "rate": rate, "device_pace_images_per_s": round(pace), "batch": batch, "repeats": repeats,
        "producer_images_per_s": found["producer"], "pipeline_images_per_s": found["pipeline"], "serial_images_per_s": found["serial"],
        "kept_of_rate": round(found["pipeline"] / rate, 3), "kept_of_producer": round(found["pipeline"] / found["producer"], 3),
        "serial_kept_of_rate": round(found["serial"] / rate, 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--images", type=int, default=8192, help="images indexed per pass [8192]")
    parser.add_argument("--rate", type=float, default=2000.0, help="the synthetic device's images/s [2000]")
    parser.add_argument("--batch", type=int, default=256, help="images per compute batch [256]")
    parser.add_argument("--repeats", type=int, default=3, help="passes per mode; median [3]")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.backend in ("both", "sqlite"):
            results["sqlite"] = bench(f"sqlite:///{Path(tmp) / 'pipeline.db'}", args.images, args.rate, args.batch, args.repeats)
        if args.backend in ("both", "postgresql"):
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from bench_store import _postgres_server

            server = _postgres_server()
            try:
                results["postgresql"] = bench(server.database(empty=True), args.images, args.rate, args.batch, args.repeats)
            finally:
                server.stop()
    for backend, r in results.items():
        print(f"{backend}: producer {r['producer_images_per_s']:,} images/s (device paced at {r['device_pace_images_per_s']:,}); "
              f"pipeline {r['pipeline_images_per_s']:,} ({r['kept_of_rate']:.0%} of the rate, {r['kept_of_producer']:.0%} of the producer); "
              f"serial {r['serial_images_per_s']:,} ({r['serial_kept_of_rate']:.0%})")
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
