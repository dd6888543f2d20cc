"""Paper-scale benchmark: how long the paper's full ImageNet experiment takes with cortex on this device.

With random weights of the real architectures (taming VQGAN f16, K=16384, d=256; the 1.4B GPT,
48 layers x 1536; CE 512-wide and RE at paper size) it measures, in one process:
- generation: tokens/s and grids/s of cortex's KV-cache sampler (fp32, bf16 autocast) vs taming's own
  `sample_with_past` on the same batch, and VQGAN decode images/s;
- extractor training: images/s of CE and RE (fp32, bf16 autocast, channels-last);
- saliency: images/s of ours (fp32, bf16) vs Captum `NoiseTunnel(Saliency)` vs the authors'
  per-sample loop, same extractor and N; achieved TFLOP/s (2x forward FLOPs: frozen weights)
  against the device's measured matmul peak and the extractor's own forward ceiling;
- a judge (torchvision ResNet, random weights): images/s;
then projects the wall time of every stage of the paper's job on this device and on one 8-GPU node
(linear scaling: an assumption, not a measurement) and writes everything as JSON.

The index stages (1M images each: top-20 salient rows and one map per image) are bounded by saliency
compute or by the database's write rate, whichever is slower: the indexer's writer thread sits behind a
bounded queue, so writes overlap compute and a stage takes max(compute, writes). `--write-rate` (images/s
of one writer) or `--write-json` (`bench_store.py --json-out`; `--write-backend` picks its backend) gives
the write rate; without either the write stage is "not given" and the index rows are compute only. One
device is one writer; the 8-GPU node is 8 ranks writing into one database, for which the projection uses
the best measured multi-writer figure (bench_store's 4 writers) as is, or the 1-writer rate where no
multi-writer figure is given: no scaling beyond what was measured.

    python benchmarks/paper_scale.py                       # paper size on a GPU, mini size on a CPU
    python benchmarks/paper_scale.py --size tiny --json-out /tmp/ps.json   # seconds; what the test runs
    python benchmarks/paper_scale.py --size paper --device cuda --json-out paper_scale_h100.json
    python benchmarks/paper_scale.py --from-json paper_scale_h100.json --write-json store.json --json-out ps.json
                                                           # re-project stored measurements with a write rate

On one H100 the paper size is meant to finish in under 8 minutes; `--budget-s` skips the remaining
optional measurements (taming's baseline at larger batches) once the budget is spent. Captum is
optional (`pip install -e ".[bench]"`); without it the Captum row says so.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_saliency import authors_algorithm, captum_smoothgrad  # noqa: E402  (same loop and Captum call as bench_saliency)

from cortex_cli.backends import taming_shim  # noqa: E402
from cortex_cli.backends.base import SamplerSettings, image_generators  # noqa: E402
from cortex_cli.backends.taming import TamingVQGM, build_net  # noqa: E402
from cortex_cli.classnames import ClassName  # noqa: E402
from cortex_cli.extractors.architectures import ExtractorConfig, build_extractor, forward_flops  # noqa: E402
from cortex_cli.model_configs import net2net_config  # noqa: E402
from cortex_cli.attribution.common import autocast  # noqa: E402
from cortex_cli.attribution import SaliencySettings, prepare_extractor, token_saliency  # noqa: E402

# The paper's full experiment (sections 3-4, appendix A): the work each stage does.
PAPER_JOB = {
    "generate": {"grids": 1_350_000},
    "train CE": {"epochs": 80, "images": 1_000_000},
    "train RE": {"epochs": 80, "images": 1_000_000},
    "index CE": {"images": 1_000_000},  # 1000 classes x 1000 images, N = 20
    "index RE": {"images": 1_000_000},
    "decode + judge": {"images": 200_000},  # our assumption: 1000 classes x 100 images x (original, masked)
}
INDEX_STAGES = ("index CE", "index RE")  # the stages that also write to the database
BACKENDS = ("sqlite", "postgresql")  # the per-backend objects of bench_store.py's JSON


@dataclass(frozen=True)
class Size:
    """One benchmark size: the generator, the extractors, and how much of each to time."""

    vqgan: dict[str, Any]
    gpt: dict[str, int]
    n_classes: int
    ce: ExtractorConfig
    re: ExtractorConfig
    top_k: int
    gen_batches: tuple[int, ...]
    taming_batches: tuple[int, ...]
    decode_batch: int
    train_batch: int
    train_steps: int
    samples: int
    saliency_images: int
    captum_images: int
    authors_images: int
    judge: str
    judge_batch: int
    judge_px: int


SIZES = {
    "tiny": Size(
        vqgan=dict(n_embed=64, embed_dim=16, resolution=64, ch=32, ch_mult=(1, 1, 1), z_channels=16),
        gpt=dict(n_layer=2, n_head=2, n_embd=32), n_classes=4,
        ce=ExtractorConfig("ce", in_channels=16, grid=16, width=32, n_classes=4, fc_width=64),
        re=ExtractorConfig("re", in_channels=16, grid=16, width=32, n_classes=4, fc_width=64),
        top_k=16, gen_batches=(1, 4), taming_batches=(4,), decode_batch=4, train_batch=8, train_steps=2,
        samples=4, saliency_images=2, captum_images=1, authors_images=1, judge="resnet18", judge_batch=2, judge_px=64,
    ),
    "mini": Size(  # the bundled mini model's architecture (MiniRecipe) and its CE/RE sizes
        vqgan=dict(n_embed=256, embed_dim=32, resolution=64, ch=32, ch_mult=(1, 2, 2), z_channels=32),
        gpt=dict(n_layer=4, n_head=4, n_embd=128), n_classes=13,
        ce=ExtractorConfig("ce", in_channels=32, grid=16, width=64, n_classes=13, fc_width=512),
        re=ExtractorConfig("re", in_channels=32, grid=16, width=64, n_classes=13, fc_width=256),
        top_k=16, gen_batches=(1, 8, 32), taming_batches=(8,), decode_batch=16, train_batch=32, train_steps=3,
        samples=20, saliency_images=8, captum_images=4, authors_images=2, judge="resnet18", judge_batch=8, judge_px=224,
    ),
    "paper": Size(  # taming's ImageNet cin transformer: VQGAN f16 K=16384, GPT 48 x 1536 (1.4B)
        vqgan=dict(n_embed=16384, embed_dim=256, resolution=256, ch=128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2,
                   z_channels=256, attn_resolutions=(16,)),
        gpt=dict(n_layer=48, n_head=24, n_embd=1536), n_classes=1000,
        ce=ExtractorConfig("ce", in_channels=256, grid=16, width=512, n_classes=1000),
        re=ExtractorConfig("re", in_channels=256, grid=16, width=512, n_classes=1000),
        top_k=600, gen_batches=(1, 16, 64, 256), taming_batches=(16, 64), decode_batch=32, train_batch=128,
        train_steps=6, samples=20, saliency_images=64, captum_images=8, authors_images=2, judge="resnet50",
        judge_batch=64, judge_px=224,
    ),
}


@dataclass
class Clock:
    """Wall time of device work (synchronising CUDA), and a budget for the optional measurements."""

    device: torch.device
    budget_s: float
    repeats: int = 1  # timed calls per measurement; the median is reported
    start: float = field(default_factory=time.perf_counter)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def time(self, fn: Callable[[], Any], repeats: int | None = None) -> tuple[float, Any]:
        """Median seconds per call of fn (after one untimed warm-up call), and its last output."""
        out = fn()
        times = []
        for _ in range(repeats or self.repeats):
            self.sync()
            start = time.perf_counter()
            out = fn()
            self.sync()
            times.append(time.perf_counter() - start)
        return statistics.median(times), out

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.start)


def matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    """TFLOP/s of a large square matmul: the device's practical peak for that dtype."""
    n = 8192 if device.type == "cuda" else 1024 if dtype == torch.float32 else 256  # CPU bf16 may be emulated: keep it short
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    clock = Clock(device, 0)
    seconds, _ = clock.time(lambda: a @ b, repeats=10 if device.type == "cuda" else 5)
    return 2 * n ** 3 / seconds / 1e12


def build_generator(size: Size, device: torch.device) -> TamingVQGM:
    """The taming Net2NetTransformer of this size, random init, built directly on the device."""
    cfg = net2net_config(n_classes=size.n_classes, **size.vqgan, **size.gpt)
    torch.manual_seed(0)
    with torch.device(device), contextlib.redirect_stdout(io.StringIO()):
        net = build_net(cfg).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return TamingVQGM(net, OmegaConf.create(cfg), device)


def bench_generation(vqgm: TamingVQGM, size: Size, clock: Clock, precisions: tuple[str, ...]) -> dict[str, Any]:
    """Ours (fp32, bf16) at every batch; taming's `sample_with_past` (fp32) at the taming batches."""
    taming_shim.install()  # taming's mingpt imports a helper that current transformers no longer has
    from taming.modules.transformer.mingpt import sample_with_past

    steps = vqgm.grid ** 2
    settings = SamplerSettings(top_k=size.top_k)
    out: dict[str, Any] = {"gpt_parameters": sum(p.numel() for p in vqgm.net.transformer.parameters()), "rows": []}

    def ours(batch: int, precision: str) -> Callable[[], Any]:
        classes = [ClassName(i % vqgm.n_classes, f"class {i}") for i in range(batch)]

        def run():
            with autocast(vqgm.device, precision):
                return vqgm.sample(classes, image_generators(classes, list(range(batch))), settings)
        return run

    def taming(batch: int) -> Callable[[], Any]:
        cond = torch.arange(batch, device=vqgm.device)[:, None] % vqgm.n_classes
        _, cond = vqgm.net.encode_to_c(cond)
        return lambda: sample_with_past(cond, vqgm.net.transformer, steps=steps, top_k=size.top_k)

    for batch in size.gen_batches:
        row: dict[str, Any] = {"batch": batch}
        for precision in precisions:
            seconds, _ = clock.time(ours(batch, precision))
            row[f"ours_{precision}_grids_per_s"] = batch / seconds
            row[f"ours_{precision}_tokens_per_s"] = batch * steps / seconds
        if batch in size.taming_batches:
            if clock.left() > 0:
                seconds, _ = clock.time(taming(batch))
                row["taming_fp32_grids_per_s"] = batch / seconds
                row["ours_over_taming_fp32"] = row["ours_fp32_grids_per_s"] / row["taming_fp32_grids_per_s"]
            else:
                row["taming_fp32_grids_per_s"] = None
                row["skipped"] = "time budget spent"
        out["rows"].append(row)
        print(f"  generate batch {batch:4d}: ours " + ", ".join(f"{p} {row[f'ours_{p}_grids_per_s']:.3f}" for p in precisions)
              + " grids/s" + (f", taming fp32 {row['taming_fp32_grids_per_s']:.3f}" if row.get("taming_fp32_grids_per_s") else ""),
              flush=True)
    tokens = torch.randint(0, vqgm.n_embed, (size.decode_batch, vqgm.grid, vqgm.grid), device=vqgm.device)
    for precision in precisions:
        def decode():
            with autocast(vqgm.device, precision):
                return vqgm.decode_tokens(tokens, batch_size=size.decode_batch)
        seconds, _ = clock.time(decode)
        out[f"decode_{precision}_images_per_s"] = size.decode_batch / seconds
    print("  decode: " + ", ".join(f"{p} {out[f'decode_{p}_images_per_s']:.2f}" for p in precisions) + " images/s", flush=True)
    return out


def bench_training(cfg: ExtractorConfig, size: Size, device: torch.device, clock: Clock, precisions: tuple[str, ...]) -> dict[str, float]:
    """Images/s of SGD steps on data already on the device: fp32, bf16 autocast, each with channels-last."""
    out = {}
    x = torch.randn(size.train_batch, cfg.in_channels, cfg.grid, cfg.grid, device=device)
    y = torch.randint(0, cfg.n_classes, (size.train_batch,), device=device)
    for precision in precisions:
        for layout in ("nchw", "channels_last"):
            torch.manual_seed(0)
            net = build_extractor(cfg).to(device).train()
            fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
            net = net.to(memory_format=fmt)
            xb = x.contiguous(memory_format=fmt)
            opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

            def step():
                for _ in range(size.train_steps):
                    with autocast(device, precision):
                        loss = torch.nn.functional.cross_entropy(net(xb).float(), y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
            seconds, _ = clock.time(step)
            out[f"{precision}_{layout}_images_per_s"] = size.train_batch * size.train_steps / seconds
    print(f"  train {cfg.arch}: " + ", ".join(f"{k.replace('_images_per_s', '')} {v:.1f}" for k, v in out.items()) + " images/s", flush=True)
    return out


def bench_saliency(cfg: ExtractorConfig, size: Size, device: torch.device, clock: Clock, peaks: dict[str, float],
                   precisions: tuple[str, ...], baselines: bool) -> dict[str, Any]:
    """Ours fp32/bf16; with `baselines`, Captum's NoiseTunnel and the authors' loop on the same extractor."""
    torch.manual_seed(0)
    net = build_extractor(cfg).to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    prepared = prepare_extractor(net)
    n = size.saliency_images
    emb = torch.randn(n, cfg.in_channels, cfg.grid, cfg.grid, device=device)
    targets, keys = [i % cfg.n_classes for i in range(n)], list(range(n))
    out: dict[str, Any] = {"images": n, "samples": size.samples}
    for precision in precisions:
        settings = SaliencySettings(samples=size.samples, precision=precision)
        seconds, _ = clock.time(lambda: token_saliency(prepared, emb, targets, keys, settings))
        out[f"ours_{precision}_images_per_s"] = n / seconds
    flops = 2 * forward_flops(cfg) * size.samples  # per image: forward + gradient to the input, N copies
    for precision in precisions:
        out[f"ours_{precision}_tflops"] = flops * out[f"ours_{precision}_images_per_s"] / 1e12
        out[f"{precision}_share_of_matmul_peak"] = out[f"ours_{precision}_tflops"] / peaks[f"{precision}_tflops"]
    chunk = min(size.samples * n, 64 if device.type == "cpu" else 1024)
    x = torch.randn(chunk, cfg.in_channels, cfg.grid, cfg.grid, device=device).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        seconds, _ = clock.time(lambda: prepared(x))
    out["forward_ceiling_tflops"] = forward_flops(cfg) * chunk / seconds / 1e12
    out["fp32_share_of_forward_ceiling"] = out["ours_fp32_tflops"] / out["forward_ceiling_tflops"]
    if baselines:
        m = min(size.captum_images, n)
        try:
            seconds, _ = clock.time(lambda: captum_smoothgrad(net, emb[:m], targets[:m], size.samples, 0.2, batch=size.samples))
            out["captum_images_per_s"] = m / seconds
            out["ours_over_captum"] = out["ours_fp32_images_per_s"] / out["captum_images_per_s"]
        except ImportError:
            out["captum_images_per_s"] = None
            out["captum"] = "not installed (pip install -e '.[bench]')"
        k = min(size.authors_images, n)
        seconds, _ = clock.time(lambda: authors_algorithm(net, emb[:k], targets[:k], size.samples, 0.2))
        out["authors_images_per_s"] = k / seconds
        out["ours_over_authors"] = out["ours_fp32_images_per_s"] / out["authors_images_per_s"]
    print(f"  saliency {cfg.arch}: ours " + ", ".join(f"{p} {out[f'ours_{p}_images_per_s']:.2f}" for p in precisions)
          + (f", captum {out['captum_images_per_s']:.2f}" if out.get("captum_images_per_s") else "")
          + (f", authors {out['authors_images_per_s']:.2f}" if "authors_images_per_s" in out else "")
          + f" images/s; fp32 {out['ours_fp32_tflops']:.3f} TFLOP/s = {out['fp32_share_of_forward_ceiling']:.0%} of the"
          f" forward ceiling, {out['fp32_share_of_matmul_peak']:.0%} of the matmul peak", flush=True)
    return out


def bench_judge(size: Size, device: torch.device, clock: Clock, precisions: tuple[str, ...]) -> dict[str, float]:
    """A torchvision ResNet judge (random weights), images/s in fp32 and bf16."""
    import torchvision

    net = getattr(torchvision.models, size.judge)(weights=None).to(device).eval().to(memory_format=torch.channels_last)
    x = torch.randn(size.judge_batch, 3, size.judge_px, size.judge_px, device=device).contiguous(memory_format=torch.channels_last)
    out = {}
    for precision in precisions:
        with torch.no_grad():
            def judge():
                with autocast(device, precision):
                    return net(x)
            seconds, _ = clock.time(judge)
        out[f"{precision}_images_per_s"] = size.judge_batch / seconds
    print(f"  judge {size.judge}: " + ", ".join(f"{p} {out[f'{p}_images_per_s']:.1f}" for p in precisions) + " images/s", flush=True)
    return out


def write_stage(rate: float | None = None, json_path: Path | None = None, backend: str = "postgresql") -> dict[str, Any]:
    """The database write stage of the index: images/s on one device (one writer) and on the 8-GPU node.

    `rate`: images/s of one writer (`--write-rate`); `json_path`: a `bench_store.py --json-out` file whose
    `backend` object holds `write_images_per_s_1_writer` and, optionally, `write_images_per_s_4_writers`.
    The 8-GPU node is 8 ranks each writing into one database: it gets the 4-writer figure as is (the best
    measured multi-writer rate, not scaled to 8), or the 1-writer rate where that is all there is.
    """
    if rate is None and json_path is None:
        return {"given": False, "note": "not given (--write-rate or --write-json): index hours are saliency compute only"}
    if json_path is not None:
        data = json.loads(Path(json_path).read_text())
        if not isinstance(data.get(backend), dict):
            raise SystemExit(f"{json_path}: no {backend!r} object (has: {', '.join(k for k, v in data.items() if isinstance(v, dict)) or 'none'}); "
                             f"pick one with --write-backend")
        figures = data[backend]
        if "write_images_per_s_1_writer" not in figures:
            raise SystemExit(f"{json_path}: {backend!r} has no write_images_per_s_1_writer (a bench_store.py --json-out file?)")
        one, four = figures["write_images_per_s_1_writer"], figures.get("write_images_per_s_4_writers")
        source = f"{json_path} ({backend})"
    else:
        one, four, source = rate, None, "--write-rate"
    for value in (one, four):
        if value is not None and not value > 0:
            raise SystemExit(f"write rates must be > 0 images/s, not {value}")
    out: dict[str, Any] = {"given": True, "source": source, "backend": backend if json_path is not None else None,
                           "images_per_s_1_writer": one, "images_per_s_4_writers": four,
                           "images_per_s_1_device": one}
    if four is not None:
        out["images_per_s_8_gpus"] = four
        out["assumption_8_gpus"] = ("8 ranks, each a writer into one database: the 4-writer rate (all writers together) "
                                    "is the best measured multi-writer figure and is used as is, not scaled to 8 writers")
    else:
        out["images_per_s_8_gpus"] = one
        out["assumption_8_gpus"] = ("8 ranks, each a writer into one database: only a 1-writer rate was given, so it is used "
                                    "as the whole database's rate (no multi-writer scaling assumed)")
    out["assumption_overlap"] = "writes overlap compute (a writer thread behind a bounded queue): a stage takes max(compute, writes)"
    return out


def _bound(compute: float | None, write: float | None, writes: bool | None) -> tuple[float | None, str | None]:
    """(hours, what bounds them) of a stage whose writes overlap its compute.

    `writes`: True for a stage that writes at a given rate `write`, None for one that writes at a rate not
    given (compute hours, bound unknown), False for one that does not write (compute-bound).
    """
    if compute is None:
        return None, None
    if writes is None:
        return compute, None
    if not writes or write <= compute:
        return compute, "compute"
    return write, "database"


def project(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Hours per stage of the paper's job at the measured rates, per precision (fp32 is the default).

    Index stages take max(compute, database writes) where `results["write_stage"]` gives a write rate;
    `bound_by` (fp32, one device), `bound_by_8_gpus`, `bound_by_bf16`, `bound_by_bf16_8_gpus` say which:
    "compute" or "database"; None for an index stage whose write rate is not given (its hours are compute only).
    """
    precisions = results["precisions"]
    write = results.get("write_stage") or {"given": False}
    gen, train, sal = results["generation"], results["training"], results["saliency"]
    rates: dict[str, tuple[dict[str, float], int]] = {
        "generate": ({p: max(r[f"ours_{p}_grids_per_s"] for r in gen["rows"]) for p in precisions}, PAPER_JOB["generate"]["grids"]),
    }
    for arch in ("CE", "RE"):
        t = train[arch.lower()]
        job = PAPER_JOB[f"train {arch}"]
        rates[f"train {arch}"] = ({p: max(t[f"{p}_nchw_images_per_s"], t[f"{p}_channels_last_images_per_s"]) for p in precisions},
                                  job["epochs"] * job["images"])
        rates[f"index {arch}"] = ({p: sal[arch.lower()][f"ours_{p}_images_per_s"] for p in precisions}, PAPER_JOB[f"index {arch}"]["images"])
    judge = results["judge"]
    rates["decode + judge"] = ({p: 1 / (1 / gen[f"decode_{p}_images_per_s"] + 1 / judge[f"{p}_images_per_s"]) for p in precisions},
                               PAPER_JOB["decode + judge"]["images"])
    rows = []
    for stage in PAPER_JOB:
        rate, work = rates[stage]
        row: dict[str, Any] = {"stage": stage, "work": work}
        writes = (True if write.get("given") else None) if stage in INDEX_STAGES else False
        row["hours_write"] = work / write["images_per_s_1_device"] / 3600 if writes else None
        row["hours_write_8_gpus"] = work / write["images_per_s_8_gpus"] / 3600 if writes else None
        if stage in INDEX_STAGES and not writes:
            row["write_stage"] = "not given"
        for p in ("fp32", "bf16"):
            row[f"rate_{p}"] = rate.get(p)
            compute = work / rate[p] / 3600 if p in rate else None
            row[f"hours_{p}_compute"] = compute
            row[f"hours_{p}_compute_8_gpus"] = compute / 8 if compute is not None else None
            suffix = "" if p == "fp32" else f"_{p}"
            row[f"hours_{p}"], row[f"bound_by{suffix}"] = _bound(compute, row["hours_write"], writes)
            row[f"hours_{p}_8_gpus"], row[f"bound_by{suffix}_8_gpus"] = _bound(row[f"hours_{p}_compute_8_gpus"], row["hours_write_8_gpus"],
                                                                              writes)
        rows.append(row)
    total: dict[str, Any] = {"stage": "total", "work": None, "rate_fp32": None, "rate_bf16": None}
    for key in ("hours_fp32", "hours_bf16", "hours_fp32_8_gpus", "hours_bf16_8_gpus"):
        total[key] = sum(r[key] for r in rows) if all(r[key] is not None for r in rows) else None
    return rows + [total]


def print_projection(rows: list[dict[str, Any]], size: str, device: str, write: dict[str, Any] | None = None) -> None:
    print(f"\nProjected wall time (hours) of the paper's job, {size}-size models, {device};")
    print("8 GPUs: 1-device compute / 8 (linear scaling, assumed); '-': not measured")
    print(f"{'stage':14s} {'work':>10s} {'rate/s':>8s} {'h fp32':>8s} {'h bf16':>8s} {'h 8xfp32':>8s} {'h 8xbf16':>8s} {'bound 1/8':>9s}")

    def cell(value: float | None) -> str:
        return f"{value:8.3g}" if value is not None else f"{'-':>8s}"

    short = {"compute": "comp", "database": "db", None: "?"}
    for r in rows:
        work = f"{r['work']:,}" if r["work"] else ""
        rate = f"{r['rate_fp32']:.3g}" if r["rate_fp32"] else ""
        bound = f"{short[r.get('bound_by')]}/{short[r.get('bound_by_8_gpus')]}" if r["stage"] != "total" else ""
        print(f"{r['stage']:14s} {work:>10s} {rate:>8s} {cell(r['hours_fp32'])} {cell(r['hours_bf16'])} "
              f"{cell(r['hours_fp32_8_gpus'])} {cell(r['hours_bf16_8_gpus'])} {bound:>9s}".rstrip())
    print("bound 1/8: fp32 on 1 device / 8 GPUs is bound by comp(ute) or d(ata)b(ase)")
    if not write or not write.get("given"):
        print("write stage: not given (--write-rate or --write-json), so the index rows are")
        print("  saliency compute only and their bound is unknown ('?')")
        return
    print(f"write stage: {write['source']}")
    print("  index stages take max(compute, writes): a writer thread overlaps compute")
    print(f"  1 device = 1 writer: {write['images_per_s_1_device']:.3g} images/s")
    four = write.get("images_per_s_4_writers") is not None
    print(f"  8 GPUs = 8 writers into one database: {write['images_per_s_8_gpus']:.3g} images/s: "
          + ("the 4-writer rate," if four else "the 1-writer rate,"))
    print("  the best measured multi-writer figure, not scaled to 8 writers" if four
          else "  not scaled (no multi-writer figure given)")
    for r in rows:
        if r["stage"] in INDEX_STAGES:
            print(f"  {r['stage']}, 1 device: compute {r['hours_fp32_compute']:.3g} h, writes {r['hours_write']:.3g} h: {r['bound_by']}-bound")
            print(f"  {r['stage']}, 8 GPUs:   compute {r['hours_fp32_compute_8_gpus']:.3g} h, writes {r['hours_write_8_gpus']:.3g} h: "
                  f"{r['bound_by_8_gpus']}-bound")


def precisions_for(peaks: dict[str, float]) -> tuple[str, ...]:
    """fp32, and bf16 only where the device computes it natively (a CPU without bf16 units emulates it ~50x slower)."""
    return ("fp32", "bf16") if peaks["bf16_tflops"] >= 0.5 * peaks["fp32_tflops"] else ("fp32",)


def run(size_name: str, device: torch.device, budget_s: float, baselines: bool = True, repeats: int | None = None,
        write: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every measurement at one size on one device; the result dictionary that is written as JSON.

    `repeats`: timed calls per measurement (median); default 1 at paper size, 3 otherwise (a shared CPU is noisy).
    `write`: the index's database write stage (`write_stage`); not given by default.
    """
    size = SIZES[size_name]
    clock = Clock(device, budget_s, repeats=repeats or (1 if size_name == "paper" else 3))
    torch.set_grad_enabled(True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    peaks = {"fp32_tflops": matmul_peak(device, torch.float32), "bf16_tflops": matmul_peak(device, torch.bfloat16)}
    print(f"== paper_scale: {size_name} size on {device} ({name}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads; matmul peak fp32 {peaks['fp32_tflops']:.3g}, "
          f"bf16 {peaks['bf16_tflops']:.3g} TFLOP/s ==", flush=True)
    precisions = precisions_for(peaks)
    if precisions == ("fp32",):
        print("  bf16 not measured: this device's bf16 matmul is slower than half its fp32 (no native bf16)", flush=True)
    results: dict[str, Any] = {"size": size_name, "device": str(device), "device_name": name, "torch": torch.__version__,
                               "date": time.strftime("%Y-%m-%d"), "peaks": peaks, "precisions": list(precisions),
                               "paper_job": PAPER_JOB}
    vqgm = build_generator(size, device)
    results["generation"] = bench_generation(vqgm, size, clock, precisions)
    del vqgm
    if device.type == "cuda":
        torch.cuda.empty_cache()
    results["training"] = {arch: bench_training(getattr(size, arch), size, device, clock, precisions) for arch in ("ce", "re")}
    results["saliency"] = {"ce": bench_saliency(size.ce, size, device, clock, peaks, precisions, baselines),
                           "re": bench_saliency(size.re, size, device, clock, peaks, precisions, baselines=False)}
    results["judge"] = bench_judge(size, device, clock, precisions)
    results["write_stage"] = write or write_stage()
    results["projection"] = project(results)
    results["seconds"] = time.perf_counter() - clock.start
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default=None, help="[paper on a GPU, mini on a CPU]")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument("--budget-s", type=float, default=420, help="skip optional baselines once this is spent [420]")
    parser.add_argument("--no-baselines", action="store_true", help="skip Captum and the authors' loop")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per figure, median [paper 1, else 3]")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default; 1 is steadier on a shared CPU)")
    parser.add_argument("--json-out", type=Path, default=Path("paper_scale.json"))
    given = parser.add_mutually_exclusive_group()
    given.add_argument("--write-rate", type=float, default=None, metavar="IMAGES_PER_S",
                       help="images/s the index's database write path sustains, per writer [not given]")
    given.add_argument("--write-json", type=Path, default=None, metavar="PATH",
                       help="write rates from a `bench_store.py --json-out` file (1 and 4 writers) [not given]")
    parser.add_argument("--write-backend", choices=BACKENDS, default="postgresql", help="which backend of --write-json [postgresql]")
    parser.add_argument("--from-json", type=Path, default=None, metavar="PATH",
                        help="measure nothing: re-project the measurements of an earlier --json-out (with new write rates)")
    args = parser.parse_args(argv)
    write = write_stage(args.write_rate, args.write_json, args.write_backend)
    if args.from_json:
        results = json.loads(args.from_json.read_text())
        results["write_stage"] = write
        results["projection"] = project(results)
        results["reprojected_from"] = str(args.from_json)
        print_projection(results["projection"], results["size"], results["device_name"] or results["device"], write)
        print(f"\nJSON: {args.json_out}")
        args.json_out.write_text(json.dumps(results, indent=2) + "\n")
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    size = args.size or ("paper" if device.type == "cuda" else "mini")
    results = run(size, device, args.budget_s, baselines=not args.no_baselines, repeats=args.repeats, write=write)
    print_projection(results["projection"], size, results["device_name"] or str(device), write)
    print(f"\n{results['seconds']:.0f} s in all; JSON: {args.json_out}")
    args.json_out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
