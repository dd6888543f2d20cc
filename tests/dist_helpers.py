"""Shared by the torchrun tests: a registered tiny model and extractor, torchrun as a subprocess, rows by identity."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from sqlalchemy import select

from cortex_cli.models import registry as model_registry
from cortex_cli.extractors.architectures import ExtractorConfig, build_extractor
from cortex_cli.extractors.registry import register_extractor
from cortex_cli.store.database import open_store
from cortex_cli.store.schema import ClassRow, ExtractorRow, ImageRow, RunClassCountRow, RunTokenCountRow, SaliencyMapRow, SaliencyRunRow, SalientTokenRow, TokenCountRow


def make_ckpt(directory: Path) -> tuple[Path, ExtractorConfig]:
    """A random 8-wide CE extractor for the tiny model, saved as safetensors."""
    torch.manual_seed(0)
    cfg = ExtractorConfig("ce", in_channels=16, grid=16, width=8, n_classes=4, fc_width=16)
    path = directory / "ce.safetensors"
    save_file({k: v.contiguous() for k, v in build_extractor(cfg).eval().state_dict().items()}, str(path))
    return path, cfg


def prepare(url: str, tiny_model_files, ckpt) -> None:
    """The tiny model and one 'ce' extractor registered, as a user would before `cortex index`."""
    store = open_store(url)
    try:
        config, weights, labels = tiny_model_files
        model = model_registry.add_model(store, "tiny", config, weights, str(labels))
        path, cfg = ckpt
        register_extractor(store, model, "ce", cfg, {}, path, {})
    finally:
        store.close()


def cortex_command(url: str, *args: str, ranks: int = 2) -> list[str]:
    """`torchrun --standalone --nproc-per-node RANKS -m cortex_cli --db URL --device cpu ARGS` (ranks=0: plain `python -m cortex_cli`)."""
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)] if ranks else []
    return [sys.executable, *launcher, "-m", "cortex_cli", "--db", url, "--device", "cpu", *args]


def environment(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(name, None)
    return env


def torchrun(url: str, *args: str) -> subprocess.CompletedProcess:
    """Run a 2-rank job to completion; fails the test with its output if it fails."""
    proc = subprocess.run(cortex_command(url, *args), capture_output=True, text=True, env=environment(), timeout=240)
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-6000:]}"
    return proc


def rows(url: str) -> dict[str, list[tuple]]:
    """Every table the job writes, keyed by identity (class id, split, seed, sampler, rank), sorted."""
    store = open_store(url)
    try:
        with store.session() as s:
            image = {i: (cid, split, seed, sampler) for i, cid, split, seed, sampler in s.execute(
                select(ImageRow.id, ClassRow.class_id, ImageRow.split, ImageRow.seed, ImageRow.sampler)
                .join(ClassRow, ClassRow.id == ImageRow.class_pk))}
            cls = dict(s.execute(select(ClassRow.id, ClassRow.class_id)).all())
            ext = dict(s.execute(select(ExtractorRow.id, ExtractorRow.name)).all())
            run = {r.id: (ext[r.extractor_id], r.samples, r.alpha, r.top_n, r.reduce, r.precision, r.seed)
                   for r in s.scalars(select(SaliencyRunRow))}
            return {
                "images": sorted((*image[r.id], bytes(r.tokens)) for r in s.scalars(select(ImageRow))),
                "token_counts": sorted((cls[r.class_pk], r.split, r.token, r.count, r.n_images) for r in s.scalars(select(TokenCountRow))),
                "saliency_runs": sorted(run.values()),
                "saliency_maps": sorted((run[r.run_id], image[r.image_id], bytes(r.tsv)) for r in s.scalars(select(SaliencyMapRow))),
                "salient_tokens": sorted((run[r.run_id], image[r.image_id], r.rank, cls[r.class_pk], r.position, r.token, r.tsv)
                                         for r in s.scalars(select(SalientTokenRow))),
                "run_token_counts": sorted((run[r.run_id], r.split, cls[r.class_pk], r.token, r.salient, r.salient_images, r.occurrences,
                                            r.occurrence_images) for r in s.scalars(select(RunTokenCountRow))),
                "run_class_counts": sorted((run[r.run_id], r.split, cls[r.class_pk], r.images) for r in s.scalars(select(RunClassCountRow))),
            }
    finally:
        store.close()


def count_maps(url: str) -> int:
    """Saliency maps committed so far (0 while the database is not there yet)."""
    from sqlalchemy import create_engine, func

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(SaliencyMapRow)).scalar() or 0)
    except Exception:
        return 0
    finally:
        engine.dispose()
