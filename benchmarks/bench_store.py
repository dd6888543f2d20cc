"""The index store: the indexer's write path against the backend's raw bulk path, and query latency, on a synthetic index.

Builds a migrated database with CLASSES x IMAGES x top-20 salient rows (default
1,000 x 100 x 20 = 2M rows; `--full` for the issue's 1,000 x 1,000 x 20 = 20M), then times:
- the indexer's write path (`IndexWriter`: bounded queue, writer thread, bulk transactions sized by
  work, the run's token counts included; K = 16384) with 1 and 4 writer processes, in images/s;
- the same rows through the backend's raw bulk path in the same run (`ceiling_rows_per_s`: a bare
  `COPY` on PostgreSQL, a bare `executemany` on SQLite; one writer), and each write figure as a share of it;
- `queries.top_tokens` (with the frequency baseline) and `queries.token_usage` on random classes/tokens: p50, p95.
SQLite and PostgreSQL side by side (a throwaway PostgreSQL server from this machine's binaries, durability
off as in the tests; `--durable` turns fsync and synchronous commit on).

    python benchmarks/bench_store.py [--classes 1000] [--images 100] [--full] [--backend both|sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from cortex_cli.index.writer import CommitPolicy, IndexWriter
from cortex_cli.index.build import index_rows
from cortex_cli.index.rankings import token_usage, top_tokens
from cortex_cli.models.registry import ClassInfo, ModelInfo
from cortex_cli.store import index as index_store
from cortex_cli.store.index import IndexRows, write_ceiling
from cortex_cli.store.database import open_store
from cortex_cli.store.schema import Base

K, GRID, TOP_N, POOL, WRITE_BATCH = 16384, 16, 20, 2000, 16  # paper codebook; each class draws from its own 2,000-token pool
ROWS_PER_IMAGE = 1 + TOP_N  # a TSV map and the top-n rows (the run's counts are written too, and not counted as rows)


def _bulk(raw, dialect: str, table: str, columns: str, rows: list[tuple]) -> None:
    """Bulk-load rows the fastest way each backend offers (COPY on PostgreSQL, executemany on SQLite)."""
    if dialect == "postgresql":
        with raw.driver_connection.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    else:
        marks = ",".join("?" * len(columns.split(",")))
        raw.cursor().executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)


def _zipf() -> np.ndarray:
    weights = 1.0 / np.arange(1, POOL + 1) ** 1.1
    return weights / weights.sum()


def _image_counts(arrays: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """tokens, occurrences and images holding each, over rows of token arrays (one row per image)."""
    tokens, counts = np.unique(arrays, return_counts=True)
    ordered = np.sort(arrays, axis=1)
    first = np.ones_like(ordered, dtype=bool)
    first[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    _, present = np.unique(ordered[first], return_counts=True)  # same token order as `tokens`
    return tokens, counts, present


def build(url: str, n_classes: int, n_images: int, seed: int = 0) -> tuple[ModelInfo, list[ClassInfo], int, dict]:
    store = open_store(url)
    dialect = store.engine.dialect.name
    rng = np.random.default_rng(seed)
    raw = store.engine.raw_connection()
    now = "2026-01-01 00:00:00"
    _bulk(raw, dialect, "models", "id,name,config_path,ckpt_path,config_hash,n_embed,embed_dim,grid,image_size,labels,created_at",
          [(1, "synthetic", "-", "-", "-", K, 256, GRID, 256, "", now)])
    _bulk(raw, dialect, "classes", "id,model_id,class_id,name,synonyms", [(c + 1, 1, c, f"class {c}", "") for c in range(n_classes)])
    _bulk(raw, dialect, "extractors", "id,model_id,name,arch,hparams,ckpt_path,ckpt_sha256,metrics,created_at",
          [(1, 1, "ce", "ce", "{}", "-", "-", "{}", now)])
    _bulk(raw, dialect, "saliency_runs", "id,model_id,extractor_id,samples,alpha,top_n,reduce,precision,seed,created_at",
          [(1, 1, 1, 20, 0.2, 20, "max-abs", "fp32", 0, now)])
    raw.commit()
    raw.close()
    deferred = [ix for table in ("salient_tokens", "run_token_counts", "token_counts") for ix in Base.metadata.tables[table].indexes]
    with store.engine.begin() as conn:  # bulk-load practice: build secondary indexes once, after the rows
        for ix in deferred:
            ix.drop(conn)
    raw = store.engine.raw_connection()
    stats = {"salient_rows": 0, "seconds_bulk": 0.0}
    zipf = _zipf()
    tsv_blob = np.zeros(GRID * GRID, dtype="<f4").tobytes()
    start = time.perf_counter()
    image_id = 0
    for c in range(n_classes):
        pool = rng.choice(K, POOL, replace=False)
        grids = pool[rng.choice(POOL, size=(n_images, GRID * GRID), p=zipf)]
        ids = np.arange(image_id + 1, image_id + n_images + 1)
        image_id += n_images
        _bulk(raw, dialect, "images", "id,model_id,class_pk,split,seed,sampler,tokens,created_at",
              [(int(i), 1, c + 1, "train", s, "synthetic", grids[s].astype("<u2").tobytes(), now) for s, i in enumerate(ids)])
        _bulk(raw, dialect, "saliency_maps", "run_id,image_id,tsv", [(1, int(i), tsv_blob) for i in ids])
        positions = np.argsort(rng.random((n_images, GRID * GRID)), axis=1)[:, :TOP_N]
        top = np.take_along_axis(grids, positions, axis=1)
        img_col = np.repeat(ids, TOP_N)
        rank_col = np.tile(np.arange(TOP_N), n_images)
        tsv_col = 1.0 / (rank_col + 1)
        rows = list(zip([1] * len(img_col), img_col.tolist(), rank_col.tolist(), [c + 1] * len(img_col), positions.reshape(-1).tolist(),
                        top.reshape(-1).tolist(), tsv_col.tolist()))
        _bulk(raw, dialect, "salient_tokens", "run_id,image_id,rank,class_pk,position,token,tsv", rows)
        tokens, counts, present = _image_counts(grids)
        _bulk(raw, dialect, "token_counts", "model_id,class_pk,split,token,count,n_images",
              list(zip([1] * len(tokens), [c + 1] * len(tokens), ["train"] * len(tokens), tokens.tolist(), counts.tolist(), present.tolist())))
        s_tokens, s_counts, s_present = _image_counts(top)
        salient = {t: (n, p) for t, n, p in zip(s_tokens.tolist(), s_counts.tolist(), s_present.tolist())}
        _bulk(raw, dialect, "run_token_counts", "run_id,split,class_pk,token,salient,salient_images,occurrences,occurrence_images",
              [(1, "train", c + 1, t, *salient.get(t, (0, 0)), n, p) for t, n, p in zip(tokens.tolist(), counts.tolist(), present.tolist())])
        _bulk(raw, dialect, "run_class_counts", "run_id,split,class_pk,images", [(1, "train", c + 1, n_images)])
        raw.commit()
        stats["salient_rows"] += len(rows)
        if (c + 1) % max(1, n_classes // 10) == 0:
            print(f"  built {c + 1}/{n_classes} classes ({time.perf_counter() - start:.0f} s)", flush=True)
    raw.close()
    with store.engine.begin() as conn:
        for ix in deferred:
            ix.create(conn)
        if dialect == "postgresql":  # rows were loaded with explicit ids: move the id sequences past them
            for table in ("models", "classes", "extractors", "saliency_runs", "images"):
                conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
    stats["seconds_bulk"] = time.perf_counter() - start
    with store.engine.connect() as conn:
        if dialect == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
            stats["mib"] = conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar() / 2**20
        else:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
            stats["mib"] = Path(store.engine.url.database).stat().st_size / 2**20
    model = ModelInfo(1, "synthetic", "-", "-", K, 256, GRID, 256, "", n_classes)
    classes = [ClassInfo(c + 1, c, f"class {c}", ()) for c in range(n_classes)]
    store.close()
    return model, classes, image_id, stats


def _batches(class_pks: list[int], ids_of: dict[int, list[int]], seed: int) -> list[IndexRows]:
    """The rows a writer hands over: compute batches of WRITE_BATCH images, tokens as skewed as the built classes'."""
    rng = np.random.default_rng(seed)
    batches = []
    for pk in class_pks:
        ids = ids_of[pk]
        pool = rng.choice(K, POOL, replace=False)  # Zipf over a 2,000-token pool, as `build` draws
        for b in range(0, len(ids), WRITE_BATCH):
            chunk = ids[b:b + WRITE_BATCH]
            grids = pool[rng.choice(POOL, size=(len(chunk), GRID * GRID), p=_zipf())]
            batches.append(index_rows(pk, chunk, torch.from_numpy(grids).reshape(len(chunk), GRID, GRID),
                                      torch.from_numpy(rng.random((len(chunk), GRID, GRID), dtype=np.float32)), TOP_N))
    return batches


def _writer(url: str, class_pks: list[int], ids_of: dict[int, list[int]], passes: list[tuple[str, list[int]]], barrier, out) -> None:
    """One writer process: its batches through each pass ('path': the indexer's `IndexWriter`; 'ceiling': the raw bulk path),
    once into each of the pass's fresh runs (a run per round, as `cortex index` keeps one writer per class)."""
    store = open_store(url)
    batches = _batches(class_pks, ids_of, class_pks[0])
    per_transaction = CommitPolicy.images // WRITE_BATCH
    timings = []
    for kind, run_ids in passes:
        barrier.wait()
        start = time.time()
        for run_id in run_ids:
            if kind == "path":
                with IndexWriter(store, run_id) as writer:
                    for rows in batches:
                        writer.put(rows)
            else:
                for b in range(0, len(batches), per_transaction):  # transactions of the path's size
                    write_ceiling(store, run_id, batches[b:b + per_transaction])
        timings.append((start, time.time()))
    out.put((timings, sum(len(rows) for rows in batches) * len(passes[0][1])))
    store.close()


def _fresh_runs(url: str, n: int) -> list[int]:
    """n new saliency runs of the synthetic extractor (every pass writes into an empty run)."""
    store = open_store(url)
    known = {r.id for r in index_store.runs(store, 1)}
    runs = [index_store.ensure_run(store, 1, index_store.RunKey(1, 20, 0.2, TOP_N, "max-abs", "fp32", seed=len(known) + i + 1))
            for i in range(n)]
    store.close()
    return runs


def write_rates(url: str, classes: list[ClassInfo], n_images: int, writers: int, images_per_writer: int, repeats: int,
                ceiling: bool) -> dict[str, float]:
    """Images/s through the indexer's write path (`IndexWriter`: queue, writer thread, bulk transactions, counts), `writers`
    processes at once, each at least `images_per_writer` images a pass (its share of the database, written into as many
    fresh runs as that takes); median over `repeats`. With `ceiling`, also rows/s of the same rows through the
    backend's raw bulk path (`store.index.write_ceiling`), interleaved with the path's passes.
    """
    per_class = max(1, min(n_images, images_per_writer))
    need = -(-images_per_writer // per_class)
    chosen = classes[:writers * need]
    ids_of = {c.pk: list(range((c.pk - 1) * n_images + 1, (c.pk - 1) * n_images + per_class + 1)) for c in chosen}
    shares = [[c.pk for c in chosen[w::writers]] for w in range(writers)]
    fewest = min(sum(len(ids_of[pk]) for pk in share) for share in shares)
    rounds = max(1, -(-images_per_writer // fewest))  # a small database is written several times, each into a fresh run
    kinds = [kind for _ in range(repeats) for kind in (("path", "ceiling") if ceiling else ("path",))]
    runs = _fresh_runs(url, len(kinds) * rounds)
    passes = [(kind, runs[i * rounds:(i + 1) * rounds]) for i, kind in enumerate(kinds)]
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(writers), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(url, share, ids_of, passes, barrier, out)) for share in shares]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"a writer process failed (exit {p.exitcode})")
    images = sum(r[1] for r in results)
    rate = {kind: [] for kind in set(kinds)}
    for i, kind in enumerate(kinds):
        rate[kind].append(images / (max(r[0][i][1] for r in results) - min(r[0][i][0] for r in results)))
    found = {"images": images, "images_per_s": statistics.median(rate["path"])}
    if ceiling:
        found["ceiling_rows_per_s"] = statistics.median(rate["ceiling"]) * ROWS_PER_IMAGE
    return found


def latencies(url: str, model: ModelInfo, classes: list[ClassInfo], n: int, seed: int = 1) -> dict[str, list[float]]:
    store = open_store(url)
    rng = np.random.default_rng(seed)
    out: dict[str, list[float]] = {"top-tokens k=100": [], "top-tokens k=100 --baseline frequency": [], "token --top 20": []}
    hot = []
    for _ in range(n):
        cls = classes[int(rng.integers(len(classes)))]
        t = time.perf_counter()
        res = top_tokens(store, model, cls, k=100)
        out["top-tokens k=100"].append(time.perf_counter() - t)
        t = time.perf_counter()
        top_tokens(store, model, cls, k=100, baseline="frequency")
        out["top-tokens k=100 --baseline frequency"].append(time.perf_counter() - t)
        hot.append(res.rows[0].token)
    for token in hot:
        t = time.perf_counter()
        token_usage(store, model, int(token), top=20)
        out["token --top 20"].append(time.perf_counter() - t)
    store.close()
    return out


def _postgres_server(durable: bool = False):
    """A throwaway PostgreSQL server from this machine's binaries (the test suite's helper)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from pg_server import PgServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("no PostgreSQL server binaries (initdb, pg_ctl) on this machine; run with --backend sqlite")
    return PgServer(bindir, durable=durable).start()


def bench(url: str, n_classes: int, images: int, queries: int, writers: Sequence[int], images_per_writer: int = 2048, repeats: int = 3) -> dict:
    """Build the synthetic index at `url`, then time the queries on it and the write path into fresh runs."""
    model, classes, _, stats = build(url, n_classes, images)
    result = {"salient_rows": stats["salient_rows"], "database_mib": round(stats["mib"]),
              "bulk_rows_per_s": round(stats["salient_rows"] / stats["seconds_bulk"])}
    # the queries first, on the built index (run 1): the write passes below add newer runs, which the queries would pick
    for name, values in latencies(url, model, classes, queries).items():
        ms = sorted(v * 1000 for v in values)
        result[name] = {"p50_ms": round(statistics.median(ms), 1), "p95_ms": round(ms[round(0.95 * (len(ms) - 1))], 1)}
    for w in writers:
        found = write_rates(url, classes, images, w, images_per_writer, repeats, ceiling=(w == writers[0]))
        result[f"write_images_per_s_{w}_writer{'s' if w > 1 else ''}"] = round(found["images_per_s"])
        result["ceiling_rows_per_s"] = round(found.get("ceiling_rows_per_s", result.get("ceiling_rows_per_s", 0)))
        result[f"write_share_of_ceiling_{w}_writer{'s' if w > 1 else ''}"] = round(
            found["images_per_s"] * ROWS_PER_IMAGE / result["ceiling_rows_per_s"], 3)
        result[f"write_images_timed_{w}_writer{'s' if w > 1 else ''}"] = found["images"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--images", type=int, default=100, help="images per class [100; --full: 1000]")
    parser.add_argument("--full", action="store_true", help="the issue's 1,000 x 1,000 x 20 = 20M rows (slow to build)")
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--backend", choices=("both", "sqlite", "postgresql"), default="both")
    parser.add_argument("--writers", default="1,4", help="concurrent writer processes to time, comma-separated [1,4]")
    parser.add_argument("--durable", action="store_true", help="PostgreSQL with fsync and synchronous commit on (default: off, as the tests)")
    parser.add_argument("--images-per-writer", type=int, default=2048, help="images each writer process writes per pass [2048]")
    parser.add_argument("--repeats", type=int, default=3, help="passes per write figure, each into a fresh run; median [3]")
    parser.add_argument("--json-out", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    images = 1000 if args.full else args.images
    writers = [int(w) for w in args.writers.split(",") if w]
    print(f"{args.classes} classes x {images} images x top-{TOP_N} = {args.classes * images * TOP_N:,} salient rows per backend")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.backend in ("both", "sqlite"):
            results["sqlite"] = bench(f"sqlite:///{Path(tmp) / 'bench.db'}", args.classes, images, args.queries, writers,
                                      args.images_per_writer, args.repeats)
        if args.backend in ("both", "postgresql"):
            server = _postgres_server(args.durable)
            try:
                results["postgresql"] = bench(server.database(empty=True), args.classes, images, args.queries, writers,
                                          args.images_per_writer, args.repeats)
            finally:
                server.stop()
    for backend, r in results.items():
        print(f"{backend}: {r['salient_rows']:,} salient rows, {r['database_mib']:,} MiB; bulk load {r['bulk_rows_per_s']:,} rows/s")
        print(f"  ceiling (raw {'COPY' if backend == 'postgresql' else 'executemany'}, 1 writer): {r['ceiling_rows_per_s']:,} rows/s")
        for w in writers:
            name = f"{w}_writer{'s' if w > 1 else ''}"
            rate = r[f"write_images_per_s_{name}"]
            print(f"  write path, {w} writer(s): {rate:,} images/s = {rate * ROWS_PER_IMAGE:,} rows/s "
                  f"({r[f'write_share_of_ceiling_{name}']:.0%} of the ceiling; counts included)")
        for name, v in r.items():
            if isinstance(v, dict):
                print(f"  {name:38s} p50 {v['p50_ms']:7.1f} ms  p95 {v['p95_ms']:7.1f} ms  ({'ok' if v['p50_ms'] < 100 else 'over'} < 100 ms)")
    if args.json_out:
        results["protocol"] = {"classes": args.classes, "images": images, "writers": writers, "images_per_writer": args.images_per_writer,
                               "repeats": args.repeats, "durable_postgresql": args.durable, "commit_policy": dataclasses.asdict(CommitPolicy())}
        args.json_out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
