"""benchmarks/bench_store.py's write figures and benchmarks/bench_index_pipeline.py at tiny size, so they cannot rot."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_index_pipeline  # noqa: E402
import bench_store  # noqa: E402


def test_bench_store_reports_the_write_path_against_the_ceiling(tmp_path):
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    result = bench_store.bench(url, n_classes=6, images=16, queries=2, writers=[1, 2], images_per_writer=32, repeats=1)
    assert result["write_images_per_s_1_writer"] > 0 and result["write_images_per_s_2_writers"] > 0
    assert result["write_images_timed_1_writer"] == 32 and result["write_images_timed_2_writers"] == 64
    assert result["ceiling_rows_per_s"] > 0
    share = result["write_images_per_s_1_writer"] * bench_store.ROWS_PER_IMAGE / result["ceiling_rows_per_s"]
    assert abs(result["write_share_of_ceiling_1_writer"] - share) < 0.01
    # every pass wrote a fresh run through the real path: maps, top-n rows and counts, none lost or doubled
    from cortex_cli.store import index, run_counts
    from cortex_cli.store.database import open_store

    store = open_store(url)
    runs = [r.id for r in index.runs(store, 1) if r.id != 1]
    path_runs = [r for r in runs if run_counts.images_indexed(store, r, "train")]
    assert sorted(run_counts.images_indexed(store, r, "train") for r in path_runs) == [32, 64]  # counts only on the path's runs
    store.close()


def test_a_small_database_is_written_into_as_many_fresh_runs_as_the_volume_needs(tmp_path):
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    model, classes, _, _ = bench_store.build(url, 2, 16)
    found = bench_store.write_rates(url, classes, 16, writers=1, images_per_writer=40, repeats=1, ceiling=False)
    assert found["images"] == 64  # 32 stored images, twice: ceil(40 / 32) rounds
    from cortex_cli.store import index, run_counts
    from cortex_cli.store.database import open_store

    store = open_store(url)
    assert sorted(run_counts.images_indexed(store, r.id, "train") for r in index.runs(store, 1) if r.id != 1) == [32, 32]
    store.close()


def test_bench_index_pipeline_keeps_a_share_of_its_paced_producer(tmp_path):
    out = tmp_path / "pipeline.json"
    bench_index_pipeline.main(["--backend", "sqlite", "--images", "128", "--batch", "32", "--rate", "400", "--repeats", "1",
                               "--json-out", str(out)])
    r = json.loads(out.read_text())["sqlite"]
    assert r["images"] == 128 and r["rate"] == 400
    for mode in ("producer", "pipeline", "serial"):
        assert 0 < r[f"{mode}_images_per_s"] < 400 * 1.5  # the paced device bounds every mode
    assert r["kept_of_producer"] == round(r["pipeline_images_per_s"] / r["producer_images_per_s"], 3)
