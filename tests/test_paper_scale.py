"""benchmarks/paper_scale.py at tiny size, so the GPU script cannot rot between lent GPUs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

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
    printed = capsys.readouterr().out
    table = printed[printed.index("Projected wall time"):].splitlines()[2:10]
    assert table[0].startswith("stage") and table[-1].startswith("total")
    assert max(len(line) for line in table) <= 80  # fits a terminal


def test_bf16_is_measured_only_where_the_device_has_it():
    assert paper_scale.precisions_for({"fp32_tflops": 50.0, "bf16_tflops": 700.0}) == ("fp32", "bf16")  # an H100
    assert paper_scale.precisions_for({"fp32_tflops": 0.05, "bf16_tflops": 0.0008}) == ("fp32",)  # this CPU: emulated bf16
