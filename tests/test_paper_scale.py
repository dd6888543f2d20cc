"""benchmarks/paper_scale.py at tiny size, so the GPU script cannot rot between lent GPUs.

One tiny CPU run (seconds) is measured once for the module; the write-stage tests re-project its JSON
(`--from-json`), as the GPU run's JSON is re-projected with a database's write rates.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import paper_scale  # noqa: E402

from cortex_cli import attribution
from cortex_cli.index import build as indexing  # noqa: E402
from cortex_cli.backends import llamagen, sampler as sampler_module  # noqa: E402
from cortex_cli.extractors.training import TrainConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> tuple[Path, str]:
    """(JSON, printed output) of one tiny run on the CPU, every baseline included."""
    out = tmp_path_factory.mktemp("ps") / "ps.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        paper_scale.main(["--size", "tiny", "--device", "cpu", "--repeats", "1", "--threads", "1", "--json-out", str(out)])
    return out, printed.getvalue()


@pytest.fixture(scope="module")
def tiny_vqgm():
    return paper_scale.build_generator(paper_scale.SIZES["tiny"], torch.device("cpu"))


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b))


def _table(printed: str) -> list[str]:
    return printed[printed.index("Projected wall time"):].splitlines()[2:10]


def test_the_json_leads_with_the_headline_keys(measured):
    result = json.loads(measured[0].read_text())
    assert list(result)[:3] == ["date", "device", "device_name"]
    assert datetime.datetime.fromisoformat(result["date"]).tzinfo is not None  # ISO 8601, UTC
    assert result["device"] == "cpu" and isinstance(result["device_name"], str) and result["device_name"]
    assert result["size"] == "tiny" and result["complete"] is True and "fp32" in result["precisions"]
    for key in ("saliency_ce", "saliency_re", "training_ce", "training_re", "validation_ce", "validation_re", "decode_judge",
                "generate_grids_per_s", "total_hours_8_gpus"):
        assert result[key] > 0, key
    assert result["generate_grids_per_s"] == result["generation"]["product_grids_per_s"]


def test_every_stage_is_timed_through_the_products_paths_at_its_defaults(measured):
    result = json.loads(measured[0].read_text())
    product, size = result["product"], paper_scale.SIZES["tiny"]
    assert product["generate"]["precision"] == "fp32" and product["generate"]["sampler"]["noise"] == "philox"
    assert product["index"]["precision"] == attribution.default_precision("cpu") and product["index"]["noise"] == "philox"
    assert product["index"]["chunk"] == attribution.default_chunk("cpu")
    gen = result["generation"]
    assert gen["product_batch"] == size.gen_batch and gen["product_precision"] == "fp32" and gen["compile"] == "off"
    rows = {(r["sampler"], r["product"]): r for r in gen["rows"]}
    assert rows[("philox", True)]["grids_per_s"] == gen["product_grids_per_s"] > 0
    assert rows[("philox", True)]["compiled"] is None  # CORTEX_COMPILE auto: eager on a CPU
    for baseline in ("host", "taming_sample_with_past", "philox"):  # at one common batch, in the same process
        assert rows[(baseline, False)]["batch"] == size.baseline_batch and rows[(baseline, False)]["grids_per_s"] > 0
    assert gen["product_over_host"] > 0 and gen["product_over_taming"] > 0 and gen["philox_over_taming_same_batch"] > 0
    for arch in ("ce", "re"):
        sal = result["saliency"][arch]
        assert sal["images_per_call"] == size.saliency_batch and sal["product_fp32_images_per_s"] == result[f"saliency_{arch}"]
        assert sal["ours_fp32_images_per_s"] > 0 and sal["host_noise_fp32_images_per_s"] > 0 and sal["ours_over_authors"] > 0
        assert sal["forward_ceiling_tflops"] > 0 and sal["fp32_share_of_matmul_peak"] > 0
        assert ("ours_over_captum" in sal) or sal["captum_images_per_s"] is None
        train = result["training"][arch]
        assert train["batch"] == size.train_batch and train["product_fp32_images_per_s"] == result[f"training_{arch}"]
        assert train["bench_fp32_images_per_s"] > 0 and train["product_over_bench_fp32"] > 0
        assert train["validate_fp32_images_per_s"] == result[f"validation_{arch}"]


def test_the_projection_is_linear_over_8_gpus_at_the_products_rates(measured):
    result = json.loads(measured[0].read_text())
    rows = result["projection"]
    assert [r["stage"] for r in rows] == [*paper_scale.PAPER_JOB, "total"]
    generate = rows[0]
    rate = result["generation"]["product_grids_per_s"]
    assert _close(generate["hours_default"], 1_350_000 / rate / 3600) and generate["default_precision"] == "fp32"
    assert _close(generate["hours_default_8_gpus"] * 8, generate["hours_default"])
    train, job = result["training"]["ce"], paper_scale.PAPER_JOB["train CE"]
    hours = job["epochs"] * (job["images"] / train["product_fp32_images_per_s"] + job["val_images"] / train["validate_fp32_images_per_s"]) / 3600
    assert _close(rows[1]["hours_fp32"], hours)  # every epoch validates
    total = rows[-1]
    assert _close(total["hours_default_8_gpus"], sum(r["hours_default_8_gpus"] for r in rows[:-1]))
    assert result["total_hours_8_gpus"] == total["hours_default_8_gpus"] and _close(total["hours_default"], 8 * total["hours_default_8_gpus"])
    assert result["total_hours_8_gpus_bf16"] is None  # no native bf16 on this CPU: not measured, not guessed
    assert result["write_stage"]["given"] is False  # neither --write-rate nor --write-json: compute only, said so
    for row in rows[:-1]:
        assert row["hours_fp32"] == row["hours_fp32_compute"] and row["hours_write"] is None
        assert row["bound_by"] == (None if row["stage"] in paper_scale.INDEX_STAGES else "compute")


def test_the_printed_table_fits_a_terminal(measured):
    printed = measured[1]
    table = _table(printed)
    assert table[0].startswith("stage") and table[-1].startswith("total")
    assert max(len(line) for line in table) <= 80
    assert "write stage: not given" in printed and "total_hours_8_gpus" in printed


def test_bars_are_not_measured_on_a_cpu(measured):
    result = json.loads(measured[0].read_text())
    assert list(result["bars"]) == [key for key, *_ in paper_scale.BARS]
    assert all(bar["status"] == "not measured" and "CPU" in bar["note"] for bar in result["bars"].values())
    assert result["bars"]["generation_grids_per_s"]["value"] == result["generation"]["product_grids_per_s"]
    assert result["bars"]["total_hours_8_gpus"]["value"] == result["total_hours_8_gpus"]


def test_bars_pass_and_fail_on_a_gpu_at_paper_size():
    results = {
        "device": "cuda", "size": "paper", "total_hours_8_gpus": 0.9,
        "generation": {"product_grids_per_s": 149.0},
        "saliency": {"ce": {"product_bf16_images_per_s": 1600.0, "fp32_share_of_matmul_peak": 0.95},
                     "re": {"product_bf16_images_per_s": 599.0}},
        "training": {"ce": {"product_over_bench_fp32": 0.7, "product_over_bench_bf16": 0.69}, "re": {"product_over_bench_fp32": 0.8}},
    }
    status = {key: bar["status"] for key, bar in paper_scale.bars(results).items()}
    assert status == {
        "generation_grids_per_s": "fail", "saliency_ce_bf16_images_per_s": "pass", "saliency_ce_fp32_share_of_matmul_peak": "pass",
        "saliency_re_bf16_images_per_s": "fail", "training_ce_fp32_product_over_bench": "pass",
        "training_ce_bf16_product_over_bench": "fail", "training_re_fp32_product_over_bench": "pass",
        "training_re_bf16_product_over_bench": "not measured", "total_hours_8_gpus": "pass",
    }
    assert {bar["status"] for bar in paper_scale.bars({**results, "size": "mini"}).values()} == {"not measured"}


def test_a_run_cut_short_still_projects_what_it_measured(measured):
    result = json.loads(measured[0].read_text())
    del result["generation"]  # a time limit stopped it before the last stage
    paper_scale.summarise(result)
    assert result["projection"][0]["hours_default"] is None and result["projection"][1]["hours_default"] > 0
    assert result["total_hours_8_gpus"] is None and result["generate_grids_per_s"] is None
    assert result["bars"]["generation_grids_per_s"]["value"] is None


def test_product_defaults_follow_the_commands_rules(tiny_vqgm):
    vqgm = tiny_vqgm
    paper = paper_scale.SIZES["paper"]  # no overrides: every batch is the product's rule
    cpu = paper_scale.product_defaults(vqgm, paper, torch.device("cpu"))
    cuda = paper_scale.product_defaults(vqgm, paper, torch.device("cuda"))  # rules only: nothing runs on the device
    assert (cpu["index"]["batch"], cuda["index"]["batch"]) == (indexing.default_batch_size("cpu"), indexing.default_batch_size("cuda"))
    assert (cpu["index"]["precision"], cuda["index"]["precision"]) == (attribution.default_precision("cpu"), attribution.default_precision("cuda"))
    assert cuda["index"]["chunk"] == attribution.default_chunk("cuda") and cuda["generate"]["compile"] == "inductor"
    assert cpu["train"]["batch"] == TrainConfig().batch_size and cpu["train"]["precision"] == TrainConfig().precision
    assert paper_scale.product_defaults(vqgm, paper_scale.SIZES["mini"], torch.device("cpu"))["train"]["batch"] == TrainConfig.mini().batch_size
    assert cpu["generate"]["batch_rule"] == "generation.default_batch_size" and cpu["generate"]["sampler"]["noise"] == "philox"


def test_a_compiled_decode_step_is_reported_and_released(tiny_vqgm, monkeypatch):
    """The CUDA path in miniature: the decode step compiles (dynamo's full graph, no code generation), the row says it
    ran compiled, and the decoder goes with its caches and steps before the next precision's batch rule reads memory."""
    monkeypatch.setenv(sampler_module.COMPILE_ENV, "aot_eager")
    size, device = paper_scale.SIZES["tiny"], torch.device("cpu")
    defaults = paper_scale.product_defaults(tiny_vqgm, size, device)
    assert defaults["generate"]["compile"] == "aot_eager"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # seconds, not a minute, on a loaded CPU
    try:
        out = paper_scale.bench_generation(tiny_vqgm, size, paper_scale.Clock(device, 60), ("fp32",), defaults, baselines=False)
    finally:
        torch.set_num_threads(threads)
        torch._dynamo.reset()
    (row,) = out["rows"]
    assert row["product"] and row["compiled"] is True and out["product_by_precision"]["fp32"]["compiled"] is True
    assert row["first_call_s"] > 0 and out["product_grids_per_s"] == row["grids_per_s"] > 0
    assert not tiny_vqgm._decoders  # released, with the decode steps it holds (sampler.decode_step keeps them on the decoder)


@pytest.fixture
def tiny_llamagen(monkeypatch):
    """A LlamaGen GPT and VQ-16 of tiny widths under a size name the script accepts (a released size takes minutes on
    a CPU; benchmarks/gpu_check.sh runs GPT-L at 384 px)."""
    monkeypatch.setitem(llamagen.GPT_MODELS, "GPT-tiny", llamagen.GPTConfig(n_layer=2, n_head=2, dim=32, multiple_of=32))
    monkeypatch.setitem(llamagen.VQ_MODELS, 16, llamagen.VQConfig(codebook_size=64, ch_mult=(1, 1, 1, 1, 1), channels=32,
                                                                  z_channels=32, res_blocks=0))


def test_llamagen_is_projected_through_the_same_stages(tiny_llamagen, tmp_path):
    out = tmp_path / "lg.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        paper_scale.main(["--model", "llamagen", "--gpt-model", "GPT-tiny", "--image-size", "128", "--size", "tiny", "--device", "cpu",
                          "--repeats", "1", "--threads", "1", "--json-out", str(out)])
    result = json.loads(out.read_text())
    assert list(result)[:5] == ["date", "device", "device_name", "size", "model"] and result["complete"] is True
    assert result["model"] == {"backend": "llamagen", "gpt_model": "GPT-tiny", "image_size": 128}
    assert set(paper_scale.KEY_ORDER) <= set(result)  # the taming run's keys, and `model`
    for key in ("saliency_ce", "saliency_re", "training_ce", "training_re", "validation_ce", "validation_re", "decode_judge",
                "generate_grids_per_s", "total_hours_8_gpus"):
        assert result[key] > 0, key
    sampler = result["product"]["generate"]["sampler"]
    assert (sampler["top_k"], sampler["guidance"], sampler["noise"]) == (64, 4.0, "philox")  # the official sampler, top-k capped at K
    gen = result["generation"]
    assert gen["steps"] == 64 and gen["product_batch"] == paper_scale.SIZES["tiny"].gen_batch and "guidance=4" in gen["sampler"]
    assert sorted((r["sampler"], r["product"]) for r in gen["rows"]) == [("host", False), ("philox", False), ("philox", True)]
    assert gen["product_over_host"] > 0 and gen["product_over_taming"] is None  # taming's sample_with_past: not this model
    assert all(bar["status"] == "not measured" for bar in result["bars"].values())
    assert "llamagen GPT-tiny at 128 px, tiny-size extractors" in printed.getvalue()
    assert max(len(line) for line in _table(printed.getvalue())) <= 80

    vqgm = paper_scale.build_llamagen("GPT-tiny", 128, torch.device("cpu"))
    size = paper_scale.llamagen_size(paper_scale.SIZES["paper"], vqgm)
    assert (size.ce.in_channels, size.ce.grid, size.re.in_channels, size.re.grid, size.ce.width) == (8, 8, 8, 8, 512)
    gpu = {**result, "device": "cuda", "size": "paper", "model": {"backend": "llamagen", "gpt_model": "GPT-L", "image_size": 384}}
    notes = {bar["status"] + ": " + bar["note"] for bar in paper_scale.bars(gpu).values()}
    assert notes == {"not measured: the bars are set for the paper's taming model, this is llamagen GPT-L at 384 px"}
    with pytest.raises(SystemExit):  # taming takes no LlamaGen options
        with contextlib.redirect_stderr(io.StringIO()):
            paper_scale.main(["--gpt-model", "GPT-B", "--json-out", str(tmp_path / "no.json")])


def test_bf16_is_measured_only_where_the_device_has_it():
    assert paper_scale.precisions_for({"fp32_tflops": 50.0, "bf16_tflops": 700.0}) == ("fp32", "bf16")  # an H100
    assert paper_scale.precisions_for({"fp32_tflops": 0.05, "bf16_tflops": 0.0008}) == ("fp32",)  # this CPU: emulated bf16


def test_an_older_json_is_not_re_projected(tmp_path):
    with pytest.raises(SystemExit, match="older paper_scale.py"):
        paper_scale.main(["--from-json", str(REPO / "docs/bench/paper_scale_h200.json"), "--json-out", str(tmp_path / "x.json")])


def _index_rows(result: dict) -> list[dict]:
    rows = [r for r in result["projection"] if r["stage"] in paper_scale.INDEX_STAGES]
    assert [r["stage"] for r in rows] == ["index CE", "index RE"]
    return rows


def _check_write_bound(result: dict, rate_1: float, rate_8: float) -> list[tuple[str, str]]:
    """Every index row takes max(compute, 1M / write rate) on 1 device and 8 GPUs; the (1, 8) bounds at the default."""
    bounds = []
    for row in _index_rows(result):
        write_1, write_8 = 1e6 / rate_1 / 3600, 1e6 / rate_8 / 3600
        assert _close(row["hours_write"], write_1) and _close(row["hours_write_8_gpus"], write_8)
        for p in (*result["precisions"], "default"):
            suffix = "" if p == "fp32" else f"_{p}"
            compute = 1e6 / row[f"rate_{p}"] / 3600
            assert _close(row[f"hours_{p}_compute"], compute) and _close(row[f"hours_{p}_compute_8_gpus"], compute / 8)
            assert _close(row[f"hours_{p}"], max(compute, write_1))
            assert _close(row[f"hours_{p}_8_gpus"], max(compute / 8, write_8))
            assert row[f"bound_by{suffix}"] == ("database" if write_1 > compute else "compute")
            assert row[f"bound_by{suffix}_8_gpus"] == ("database" if write_8 > compute / 8 else "compute")
        bounds.append((row["bound_by_default"], row["bound_by_default_8_gpus"]))
    others = [r for r in result["projection"][:-1] if r["stage"] not in paper_scale.INDEX_STAGES]
    assert all(r["bound_by"] == r["bound_by_8_gpus"] == "compute" and r["hours_write"] is None for r in others)
    total = result["projection"][-1]
    assert _close(total["hours_fp32"], sum(r["hours_fp32"] for r in result["projection"][:-1]))
    assert _close(total["hours_default_8_gpus"], sum(r["hours_default_8_gpus"] for r in result["projection"][:-1]))
    assert result["total_hours_8_gpus"] == total["hours_default_8_gpus"]  # writes included
    return bounds


def _reproject(measured, tmp_path, *args: str) -> dict:
    out = tmp_path / "again.json"
    paper_scale.main(["--from-json", str(measured[0]), *args, "--json-out", str(out)])
    return json.loads(out.read_text())


def test_a_slow_database_bounds_the_index_stages(measured, tmp_path, capsys):
    result = _reproject(measured, tmp_path, "--write-rate", "0.001")  # 1 image per 1,000 s: every index stage waits for it
    stage = result["write_stage"]
    assert stage["given"] and stage["images_per_s_1_device"] == stage["images_per_s_8_gpus"] == 0.001
    assert "1-writer" in stage["assumption_8_gpus"]  # no multi-writer figure: used as is, not scaled to 8
    assert _check_write_bound(result, 0.001, 0.001) == [("database", "database")] * 2
    assert result["saliency"] == json.loads(measured[0].read_text())["saliency"]  # re-projected, not re-measured
    table = _table(capsys.readouterr().out)
    assert table[0].rstrip().endswith("bound 1/8") and max(len(line) for line in table) <= 80
    assert [line.split()[-1] for line in table[4:6]] == ["db/db", "db/db"]
    assert table[1].split()[-1] == "comp/comp"  # generate


def test_a_fast_database_leaves_the_index_stages_compute_bound(measured, tmp_path):
    result = _reproject(measured, tmp_path, "--write-rate", "1e12")
    assert _check_write_bound(result, 1e12, 1e12) == [("compute", "compute")] * 2


def test_one_writer_between_the_compute_rates_bounds_only_the_8_gpu_node(measured, tmp_path):
    ce = json.loads(measured[0].read_text())["saliency_ce"]  # writes take half the 1-device compute, 4x the 8-GPU compute
    result = _reproject(measured, tmp_path, "--write-rate", str(2 * ce))
    bounds = _check_write_bound(result, 2 * ce, 2 * ce)
    assert bounds[0] == ("compute", "database")


def test_write_json_takes_the_chosen_backends_1_and_4_writer_rates(measured, tmp_path):
    store = tmp_path / "bench_store.json"
    store.write_text(json.dumps({
        "sqlite": {"salient_rows": 2_000_000, "write_images_per_s_1_writer": 3000.0, "write_images_per_s_4_writers": 5000.0},
        "postgresql": {"salient_rows": 2_000_000, "write_images_per_s_1_writer": 0.002, "write_images_per_s_4_writers": 0.006},
    }))
    result = _reproject(measured, tmp_path, "--write-json", str(store))  # postgresql by default: 1 writer on 1 device, 4 for 8 GPUs
    stage = result["write_stage"]
    assert stage["backend"] == "postgresql" and (stage["images_per_s_1_device"], stage["images_per_s_8_gpus"]) == (0.002, 0.006)
    assert "4-writer" in stage["assumption_8_gpus"] and "not scaled" in stage["assumption_8_gpus"]
    assert _check_write_bound(result, 0.002, 0.006) == [("database", "database")] * 2
    result = _reproject(measured, tmp_path, "--write-json", str(store), "--write-backend", "sqlite")
    assert result["write_stage"]["backend"] == "sqlite"
    assert _check_write_bound(result, 3000.0, 5000.0)
    one_only = tmp_path / "one_writer.json"  # no 4-writer figure: the 8-GPU node gets the 1-writer rate as is
    one_only.write_text(json.dumps({"postgresql": {"write_images_per_s_1_writer": 0.002}}))
    assert _check_write_bound(_reproject(measured, tmp_path, "--write-json", str(one_only)), 0.002, 0.002) == [("database", "database")] * 2
    sqlite_only = tmp_path / "sqlite_only.json"
    sqlite_only.write_text(json.dumps({"sqlite": {"write_images_per_s_1_writer": 1.0}}))
    with pytest.raises(SystemExit, match="no 'postgresql' object"):
        _reproject(measured, tmp_path, "--write-json", str(sqlite_only))
