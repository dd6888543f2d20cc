"""benchmarks/paper_scale.py at tiny size, so the GPU script cannot rot between lent GPUs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import paper_scale  # noqa: E402


def test_tiny_run_measures_every_stage_and_projects_the_paper_job(tmp_path, capsys):
    out = tmp_path / "ps.json"
    paper_scale.main(["--size", "tiny", "--device", "cpu", "--repeats", "1", "--json-out", str(out)])
    result = json.loads(out.read_text())
    assert result["size"] == "tiny" and result["device"] == "cpu" and "fp32" in result["precisions"]
    rows = result["generation"]["rows"]
    assert [r["batch"] for r in rows] == list(paper_scale.SIZES["tiny"].gen_batches)
    assert all(r["ours_fp32_grids_per_s"] > 0 for r in rows)
    assert any(r.get("ours_over_taming_fp32", 0) > 0 for r in rows)  # taming's own sample_with_past ran beside ours
    assert result["training"]["ce"]["fp32_channels_last_images_per_s"] > 0
    sal = result["saliency"]["ce"]
    assert sal["ours_over_authors"] > 0 and sal["forward_ceiling_tflops"] > 0
    assert ("ours_over_captum" in sal) or sal["captum_images_per_s"] is None
    stages = [r["stage"] for r in result["projection"]]
    assert stages == [*paper_scale.PAPER_JOB, "total"]
    generate = result["projection"][0]
    rate = max(r["ours_fp32_grids_per_s"] for r in rows)
    assert abs(generate["hours_fp32"] - 1_350_000 / rate / 3600) < 1e-6 * generate["hours_fp32"]
    assert abs(generate["hours_fp32_8_gpus"] * 8 - generate["hours_fp32"]) < 1e-9 * generate["hours_fp32"]
    assert result["write_stage"]["given"] is False  # neither --write-rate nor --write-json: compute only, said so
    for row in result["projection"][:-1]:
        assert row["hours_fp32"] == row["hours_fp32_compute"] and row["hours_write"] is None
        assert row["bound_by"] == (None if row["stage"] in paper_scale.INDEX_STAGES else "compute")
    printed = capsys.readouterr().out
    table = printed[printed.index("Projected wall time"):].splitlines()[2:10]
    assert table[0].startswith("stage") and table[-1].startswith("total")
    assert max(len(line) for line in table) <= 80  # fits a terminal
    assert "write stage: not given" in printed


def test_bf16_is_measured_only_where_the_device_has_it():
    assert paper_scale.precisions_for({"fp32_tflops": 50.0, "bf16_tflops": 700.0}) == ("fp32", "bf16")  # an H100
    assert paper_scale.precisions_for({"fp32_tflops": 0.05, "bf16_tflops": 0.0008}) == ("fp32",)  # this CPU: emulated bf16


def _index_rows(result: dict) -> list[dict]:
    rows = [r for r in result["projection"] if r["stage"] in paper_scale.INDEX_STAGES]
    assert [r["stage"] for r in rows] == ["index CE", "index RE"]
    return rows


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b))


def _check_write_bound(result: dict, rate_1: float, rate_8: float) -> list[tuple[str, str]]:
    """Every index row takes max(compute, 1M / write rate) on 1 device and 8 GPUs; the (1, 8) bounds, fp32."""
    bounds = []
    for row in _index_rows(result):
        write_1, write_8 = 1e6 / rate_1 / 3600, 1e6 / rate_8 / 3600
        assert _close(row["hours_write"], write_1) and _close(row["hours_write_8_gpus"], write_8)
        for p in result["precisions"]:
            suffix = "" if p == "fp32" else f"_{p}"
            compute = 1e6 / row[f"rate_{p}"] / 3600
            assert _close(row[f"hours_{p}_compute"], compute) and _close(row[f"hours_{p}_compute_8_gpus"], compute / 8)
            assert _close(row[f"hours_{p}"], max(compute, write_1))
            assert _close(row[f"hours_{p}_8_gpus"], max(compute / 8, write_8))
            assert row[f"bound_by{suffix}"] == ("database" if write_1 > compute else "compute")
            assert row[f"bound_by{suffix}_8_gpus"] == ("database" if write_8 > compute / 8 else "compute")
        bounds.append((row["bound_by"], row["bound_by_8_gpus"]))
    others = [r for r in result["projection"][:-1] if r["stage"] not in paper_scale.INDEX_STAGES]
    assert all(r["bound_by"] == r["bound_by_8_gpus"] == "compute" and r["hours_write"] is None for r in others)
    total = result["projection"][-1]
    assert _close(total["hours_fp32"], sum(r["hours_fp32"] for r in result["projection"][:-1]))
    assert _close(total["hours_fp32_8_gpus"], sum(r["hours_fp32_8_gpus"] for r in result["projection"][:-1]))
    return bounds


@pytest.fixture(scope="module")
def slow_writes(tmp_path_factory) -> Path:
    """A tiny run whose database takes 1 image per 1,000 s: every index stage waits for it."""
    out = tmp_path_factory.mktemp("ps") / "slow_writes.json"
    paper_scale.main(["--size", "tiny", "--device", "cpu", "--repeats", "1", "--no-baselines",
                      "--write-rate", "0.001", "--json-out", str(out)])
    return out


def test_a_slow_database_bounds_the_index_stages(slow_writes, capsys):
    result = json.loads(slow_writes.read_text())
    stage = result["write_stage"]
    assert stage["given"] and stage["images_per_s_1_device"] == stage["images_per_s_8_gpus"] == 0.001
    assert "1-writer" in stage["assumption_8_gpus"]  # no multi-writer figure: used as is, not scaled to 8
    assert _check_write_bound(result, 0.001, 0.001) == [("database", "database")] * 2
    paper_scale.main(["--from-json", str(slow_writes), "--write-rate", "0.001", "--json-out", str(slow_writes.with_name("again.json"))])
    printed = capsys.readouterr().out
    table = printed[printed.index("Projected wall time"):].splitlines()[2:10]
    assert table[0].rstrip().endswith("bound 1/8") and max(len(line) for line in table) <= 80
    assert [line.split()[-1] for line in table[4:6]] == ["db/db", "db/db"]
    assert table[1].split()[-1] == "comp/comp"  # generate


def test_a_fast_database_leaves_the_index_stages_compute_bound(slow_writes, tmp_path):
    out = tmp_path / "fast.json"
    paper_scale.main(["--from-json", str(slow_writes), "--write-rate", "1e12", "--json-out", str(out)])
    result = json.loads(out.read_text())
    assert result["saliency"] == json.loads(slow_writes.read_text())["saliency"]  # re-projected, not re-measured
    assert _check_write_bound(result, 1e12, 1e12) == [("compute", "compute")] * 2


def test_one_writer_between_the_compute_rates_bounds_only_the_8_gpu_node(slow_writes, tmp_path):
    measured = json.loads(slow_writes.read_text())
    ce = measured["saliency"]["ce"]["ours_fp32_images_per_s"]
    out = tmp_path / "between.json"  # writes take half the 1-device compute, 4x the 8-GPU compute
    paper_scale.main(["--from-json", str(slow_writes), "--write-rate", str(2 * ce), "--json-out", str(out)])
    result = json.loads(out.read_text())
    bounds = _check_write_bound(result, 2 * ce, 2 * ce)
    assert bounds[0] == ("compute", "database")


def test_write_json_takes_the_chosen_backends_1_and_4_writer_rates(slow_writes, tmp_path):
    store = tmp_path / "bench_store.json"
    store.write_text(json.dumps({
        "sqlite": {"salient_rows": 2_000_000, "write_images_per_s_1_writer": 3000.0, "write_images_per_s_4_writers": 5000.0},
        "postgresql": {"salient_rows": 2_000_000, "write_images_per_s_1_writer": 0.002, "write_images_per_s_4_writers": 0.006},
    }))
    out = tmp_path / "ps.json"
    paper_scale.main(["--from-json", str(slow_writes), "--write-json", str(store), "--json-out", str(out)])
    result = json.loads(out.read_text())  # postgresql by default: 1 writer on 1 device, 4 writers' rate for 8 GPUs
    stage = result["write_stage"]
    assert stage["backend"] == "postgresql" and (stage["images_per_s_1_device"], stage["images_per_s_8_gpus"]) == (0.002, 0.006)
    assert "4-writer" in stage["assumption_8_gpus"] and "not scaled" in stage["assumption_8_gpus"]
    assert _check_write_bound(result, 0.002, 0.006) == [("database", "database")] * 2
    paper_scale.main(["--from-json", str(slow_writes), "--write-json", str(store), "--write-backend", "sqlite", "--json-out", str(out)])
    result = json.loads(out.read_text())
    assert result["write_stage"]["backend"] == "sqlite"
    assert _check_write_bound(result, 3000.0, 5000.0)
    one_only = tmp_path / "one_writer.json"  # no 4-writer figure: the 8-GPU node gets the 1-writer rate as is
    one_only.write_text(json.dumps({"postgresql": {"write_images_per_s_1_writer": 0.002}}))
    paper_scale.main(["--from-json", str(slow_writes), "--write-json", str(one_only), "--json-out", str(out)])
    assert _check_write_bound(json.loads(out.read_text()), 0.002, 0.002) == [("database", "database")] * 2
    sqlite_only = tmp_path / "sqlite_only.json"
    sqlite_only.write_text(json.dumps({"sqlite": {"write_images_per_s_1_writer": 1.0}}))
    with pytest.raises(SystemExit, match="no 'postgresql' object"):
        paper_scale.main(["--from-json", str(slow_writes), "--write-json", str(sqlite_only), "--json-out", str(out)])
