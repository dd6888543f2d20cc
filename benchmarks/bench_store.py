"""The index store: insert rows/s (the indexer's own write path) and query latency on a synthetic index.

Builds a migrated SQLite database with CLASSES x IMAGES x top-20 salient rows (default
1,000 x 100 x 20 = 2M rows; `--full` for the issue's 1,000 x 1,000 x 20 = 20M), then times
`queries.top_tokens` (with the baseline) and `queries.token_usage` on random classes/tokens.

    python benchmarks/bench_store.py [--classes 1000] [--images 100] [--full] [--queries 50]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cortex_cli.indexing import write_batch
from cortex_cli.queries import token_usage, top_tokens
from cortex_cli.registry import ClassInfo, ModelInfo
from cortex_cli.store.database import open_store

K, GRID, TOP_N, POOL = 16384, 16, 20, 2000  # paper codebook; each class draws from its own 2,000-token pool


def build(url: str, n_classes: int, n_images: int, seed: int = 0) -> tuple[ModelInfo, list[ClassInfo], int, dict]:
    store = open_store(url)
    rng = np.random.default_rng(seed)
    raw = store.engine.raw_connection()
    cur = raw.cursor()
    now = "2026-01-01 00:00:00"
    cur.execute("INSERT INTO models VALUES (1,'synthetic','-','-','-',?,256,?,256,'',?)", (K, GRID, now))
    cur.executemany("INSERT INTO classes VALUES (?,?,?,?,?)", [(c + 1, 1, c, f"class {c}", "") for c in range(n_classes)])
    cur.execute("INSERT INTO extractors VALUES (1,1,'ce','ce','{}','-','-','{}',?)", (now,))
    cur.execute("INSERT INTO saliency_runs VALUES (1,1,1,20,0.2,20,'max-abs','fp32',0,?)", (now,))
    raw.commit()
    stats = {"salient_rows": 0, "seconds_bulk": 0.0}
    zipf = 1.0 / np.arange(1, POOL + 1) ** 1.1
    zipf /= zipf.sum()
    tsv_blob = np.zeros(GRID * GRID, dtype="<f4").tobytes()
    start = time.perf_counter()
    image_id = 0
    for c in range(n_classes):
        pool = rng.choice(K, POOL, replace=False)
        grids = pool[rng.choice(POOL, size=(n_images, GRID * GRID), p=zipf)]
        ids = np.arange(image_id + 1, image_id + n_images + 1)
        image_id += n_images
        cur.executemany(
            "INSERT INTO images VALUES (?,1,?,'train',?,'synthetic',?,?)",
            [(int(i), c + 1, s, grids[s].astype("<u2").tobytes(), now) for s, i in enumerate(ids)],
        )
        cur.executemany("INSERT INTO saliency_maps VALUES (1,?,?)", [(int(i), tsv_blob) for i in ids])
        positions = np.argsort(rng.random((n_images, GRID * GRID)), axis=1)[:, :TOP_N]
        img_col = np.repeat(ids, TOP_N)
        rank_col = np.tile(np.arange(TOP_N), n_images)
        pos_col = positions.reshape(-1)
        tok_col = np.take_along_axis(grids, positions, axis=1).reshape(-1)
        tsv_col = 1.0 / (rank_col + 1)
        rows = list(zip(img_col.tolist(), rank_col.tolist(), [c + 1] * len(img_col), pos_col.tolist(), tok_col.tolist(), tsv_col.tolist()))
        cur.executemany("INSERT INTO salient_tokens VALUES (1,?,?,?,?,?,?)", rows)
        tokens, counts = np.unique(grids, return_counts=True)
        ordered = np.sort(grids, axis=1)
        first = np.ones_like(ordered, dtype=bool)
        first[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
        _, present = np.unique(ordered[first], return_counts=True)  # same token order as `tokens`
        cur.executemany("INSERT INTO token_counts VALUES (1,?,'train',?,?,?)",
                        list(zip([c + 1] * len(tokens), tokens.tolist(), counts.tolist(), present.tolist())))
        raw.commit()
        stats["salient_rows"] += len(rows)
        if (c + 1) % max(1, n_classes // 10) == 0:
            print(f"  built {c + 1}/{n_classes} classes ({time.perf_counter() - start:.0f} s)", flush=True)
    stats["seconds_bulk"] = time.perf_counter() - start
    cur.execute("ANALYZE")
    raw.commit()
    raw.close()
    model = ModelInfo(1, "synthetic", "-", "-", K, 256, GRID, 256, "", n_classes)
    classes = [ClassInfo(c + 1, c, f"class {c}", ()) for c in range(n_classes)]
    store.close()
    return model, classes, image_id, stats


def insert_rate(url: str, model: ModelInfo, classes: list[ClassInfo], batches: int = 50, batch: int = 16) -> float:
    """Rows/s through `indexing.write_batch` (the indexer's transaction per batch), into a fresh run."""
    store = open_store(url)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO saliency_runs VALUES (2,1,1,20,0.2,20,'signed-max','fp32',0,'2026-01-01')")
    rows = 0
    start = time.perf_counter()
    for b in range(batches):
        ids = list(range(b * batch + 1, (b + 1) * batch + 1))
        tokens = torch.randint(0, K, (batch, GRID, GRID))
        write_batch(store, 2, classes[0].pk, ids, tokens, torch.rand(batch, GRID, GRID), TOP_N)
        rows += batch * (TOP_N + 1)
    rate = rows / (time.perf_counter() - start)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM saliency_runs WHERE id = 2")
    store.close()
    return rate


def latencies(url: str, model: ModelInfo, classes: list[ClassInfo], n: int, seed: int = 1) -> dict[str, list[float]]:
    store = open_store(url)
    rng = np.random.default_rng(seed)
    out: dict[str, list[float]] = {"top-tokens k=100": [], "top-tokens k=100 --baseline": [], "token --top 20": []}
    hot = []
    for _ in range(n):
        cls = classes[int(rng.integers(len(classes)))]
        t = time.perf_counter()
        res = top_tokens(store, model, cls, k=100)
        out["top-tokens k=100"].append(time.perf_counter() - t)
        t = time.perf_counter()
        top_tokens(store, model, cls, k=100, baseline=True)
        out["top-tokens k=100 --baseline"].append(time.perf_counter() - t)
        hot.append(res.rows[0].token)
    for token in hot:
        t = time.perf_counter()
        token_usage(store, model, int(token), top=20)
        out["token --top 20"].append(time.perf_counter() - t)
    store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--images", type=int, default=100, help="images per class [100; --full: 1000]")
    parser.add_argument("--full", action="store_true", help="the issue's 1,000 x 1,000 x 20 = 20M rows (slow to build)")
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--db", type=Path, default=None, help="database file [a temporary one]")
    args = parser.parse_args()
    images = 1000 if args.full else args.images
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "bench.db"
        url = f"sqlite:///{path}"
        print(f"building {args.classes} classes x {images} images x top-{TOP_N} = {args.classes * images * TOP_N:,} salient rows")
        model, classes, n_images, stats = build(url, args.classes, images)
        size = path.stat().st_size / 2**20
        print(f"bulk build: {stats['salient_rows'] / stats['seconds_bulk']:,.0f} salient rows/s (raw executemany, with images, maps, "
              f"token counts); database {size:,.0f} MiB")
        print(f"indexer write path (write_batch, one transaction per 16 images): {insert_rate(url, model, classes):,.0f} rows/s")
        for name, values in latencies(url, model, classes, args.queries).items():
            ms = sorted(v * 1000 for v in values)
            p50, p90 = statistics.median(ms), ms[int(0.9 * (len(ms) - 1))]
            print(f"  {name:28s} p50 {p50:7.1f} ms  p90 {p90:7.1f} ms  ({'ok' if p50 < 100 else 'over'} < 100 ms)")


if __name__ == "__main__":
    main()
