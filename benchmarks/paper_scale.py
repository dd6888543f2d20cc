"""Paper-scale benchmark: how long the paper's full ImageNet job takes with cortex on this device, timed as
the commands run it.

With random weights of the real architectures (taming VQGAN f16, K=16384, d=256; the 1.4B GPT, 48 layers x
1536; CE and RE at paper size) it times every stage, in one process, through the code the commands run and
at the commands' defaults (`product_defaults`: their batch rule, precision, sampler and noise):
- generate: `TamingVQGM.sample` with `backends.base.image_streams` (the philox sampler, its decode step
  compiled where `CORTEX_COMPILE` says: on CUDA by default), classes and splits mixed in every batch as
  `generate` deals them, at `generation.default_batch_size` in the default precision (the product row) and
  in bf16 at bf16's own batch; beside them, as baselines, the older host sampler (`noise='host'`) and taming's
  own `sample_with_past` at one common batch (`Size.baseline_batch`), and the philox sampler at that batch;
- index: what `index` does per batch (embed the tokens, `token_saliency` with the philox noise drawn on the
  device, `indexing.index_rows`), `indexing.default_batch_size` images a call, fp32 and bf16; beside it
  `token_saliency` alone on resident embeddings, the older host noise, Captum's `NoiseTunnel(Saliency)` and
  the authors' per-sample loop; achieved TFLOP/s (2x forward FLOPs: frozen weights) against the measured
  fp32/bf16 matmul peak and the extractor's own forward ceiling;
- train: the product's loop `extractors.training.train_epoch` (`make_optimizer`, `memory_format`,
  `autocast`, token grids resident where they fit) at `TrainConfig`'s batch, against the benchmark's ideal
  loop (one fixed batch on the device, the same device choices), and `validate` (its images/s);
- decode + judge: VQGAN decode and a torchvision ResNet judge (random weights);
then projects the wall time of every stage of the paper's job on this device and on one 8-GPU node (linear
scaling over 8 GPUs: an assumption, not a measurement), writes `total_hours_8_gpus` at the product's
defaults, checks issue 29's bars (`bars`; "not measured" on a CPU or below paper size) and writes everything
as JSON. The JSON is rewritten after every stage (`"complete": false` until the end), so a run cut short by
a time limit still leaves what it measured.

Top-level keys: `date` (ISO 8601, UTC), `device` ('cuda' / 'cpu'), `device_name`, `size`, `complete`,
`seconds`, `product` (the defaults timed), `generation` (`product_grids_per_s`, `product_batch`,
`product_precision`, `product_by_precision`, `rows`, the baselines' ratios), the per-stage rates at the
product's defaults `generate_grids_per_s`, `saliency_ce`, `saliency_re`, `training_ce`, `training_re`,
`validation_ce`, `validation_re`, `decode_judge` (images/s), `total_hours_1_gpu`, `total_hours_8_gpus` (at
the defaults), `total_hours_8_gpus_fp32` / `_bf16` (every stage in one precision), `bars`, `projection` (per
stage: hours on 1 device and on 8 GPUs, per precision and at the default), then every measurement
(`saliency`, `training`, `decode`, `judge`), `peaks`, `precisions`, `write_stage`, `paper_job`, `torch`, `cuda_version`.

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

On one H100 the paper size is meant to finish in about 5 minutes: the product rows come first and
`--budget-s` skips the remaining optional measurements (bf16 generation, the baselines) once the budget is
spent; the generation stage runs last (its decode step compiles, which takes the longest). Captum is
optional (`pip install -e ".[bench]"`); without it the Captum row says so.

`--model llamagen` projects the same job onto a LlamaGen generator instead (issue 31): a random `LlamaGenVQGM`
of `--gpt-model` (a released size, `llamagen.GPT_MODELS`; default GPT-L) with the VQ-16 tokenizer at
`--image-size` px (default 384: 24 x 24 tokens), built on the meta device and materialised on the device with a
seeded init. The same stages are timed where they apply: generation through the model's `sample` with its
default sampler (the official top-k 2000 and classifier-free guidance 4.0, so every image is two rows) at the
product's batch rule, and the host sampler and the philox sampler at the common batch as baselines (taming's
`sample_with_past` does not apply); saliency, training and validation with the size's CE and RE on LlamaGen's
embeddings (in_channels 8, grid = image size / 16); the VQ-16 decode. `--size` then picks the extractors' widths,
batches and repeats. The JSON has the same keys plus `model` ({"backend": "llamagen", "gpt_model", "image_size"});
issue 29's bars are taming's (the paper's model), so they are "not measured" for LlamaGen.

    python benchmarks/paper_scale.py --model llamagen --device cuda --json-out paper_scale_llamagen_h100.json
    python benchmarks/paper_scale.py --model llamagen --gpt-model GPT-B --image-size 256 --size tiny --device cpu
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import io
import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_saliency import authors_algorithm, captum_smoothgrad  # noqa: E402  (same loop and Captum call as bench_saliency)

from cortex_cli import attribution
from cortex_cli.images import generation
from cortex_cli.index import build as indexing  # noqa: E402
from cortex_cli.attribution import SaliencySettings, default_chunk, prepare_extractor, token_saliency  # noqa: E402
from cortex_cli.backends import sampler as sampler_module, taming_shim  # noqa: E402
from cortex_cli.backends import llamagen  # noqa: E402
from cortex_cli.backends.base import SamplerSettings, image_streams  # noqa: E402
from cortex_cli.backends.llamagen import LlamaGenVQGM  # noqa: E402
from cortex_cli.backends.taming import TamingVQGM, build_net  # noqa: E402
from cortex_cli.models.classnames import ClassName  # noqa: E402
from cortex_cli.extractors import training  # noqa: E402
from cortex_cli.extractors.architectures import ExtractorConfig, build_extractor, forward_flops  # noqa: E402
from cortex_cli.extractors.training import TrainConfig, keeps_resident, make_optimizer, memory_format, train_epoch, validate  # noqa: E402
from cortex_cli.models.configs import net2net_config  # noqa: E402

# The paper's full experiment (sections 3-4, appendix A): the work each stage does.
PAPER_JOB = {
    "generate": {"grids": 1_350_000},  # 1000 classes x (1000 train + 300 val + 50 test)
    "train CE": {"epochs": 80, "images": 1_000_000, "val_images": 300_000},  # every epoch validates on the val split
    "train RE": {"epochs": 80, "images": 1_000_000, "val_images": 300_000},
    "index CE": {"images": 1_000_000},  # 1000 classes x 1000 images, N = 20
    "index RE": {"images": 1_000_000},
    "decode + judge": {"images": 200_000},  # our assumption: 1000 classes x 100 images x (original, masked)
}
INDEX_STAGES = ("index CE", "index RE")  # the stages that also write to the database
BACKENDS = ("sqlite", "postgresql")  # the per-backend objects of bench_store.py's JSON
PRECISIONS = ("fp32", "bf16")
MODEL_NAME = "paper-scale"  # the model name the philox stream keys are derived from (any name costs the same)
MODELS = ("taming", "llamagen")  # --model: the paper's taming generator, or a LlamaGen one (issue 31)
LLAMAGEN_DOWNSAMPLE = 16  # LlamaGen's VQ-16 (the released ImageNet GPTs' tokenizer)
AnyVQGM = TamingVQGM | LlamaGenVQGM  # the generators this benchmark builds


@dataclass(frozen=True)
class Size:
    """One benchmark size: the generator, the extractors, and how much of each to time.

    `None` batches are the product's (`product_defaults`); a number overrides it (tiny only: a CPU test's seconds).
    """

    vqgan: dict[str, Any]
    gpt: dict[str, int]
    n_classes: int
    ce: ExtractorConfig
    re: ExtractorConfig
    recipe: str  # which TrainConfig the training stage takes its batch and precision from: 'paper' or 'mini'
    baseline_batch: int  # the host sampler's, taming's and the philox sampler's common batch
    decode_batch: int
    train_steps: int  # training steps timed per call (one call = train_steps batches)
    samples: int  # SmoothGrad N
    captum_images: int
    authors_images: int
    judge: str
    judge_batch: int
    judge_px: int
    gen_batch: int | None = None
    saliency_batch: int | None = None
    train_batch: int | None = None


SIZES = {
    "tiny": Size(
        vqgan=dict(n_embed=64, embed_dim=16, resolution=32, ch=32, ch_mult=(1, 1, 1), z_channels=16),  # 8 x 8 tokens
        gpt=dict(n_layer=2, n_head=2, n_embd=32), n_classes=4,
        ce=ExtractorConfig("ce", in_channels=16, grid=8, width=32, n_classes=4, fc_width=64),
        re=ExtractorConfig("re", in_channels=16, grid=8, width=32, n_classes=4, fc_width=64),
        recipe="mini", baseline_batch=4, decode_batch=4, train_steps=2, samples=4, captum_images=1, authors_images=1,
        judge="resnet18", judge_batch=2, judge_px=64, gen_batch=8, saliency_batch=8, train_batch=8,
    ),
    "mini": Size(  # the bundled mini model's architecture (MiniRecipe), its CE/RE sizes and its training recipe
        vqgan=dict(n_embed=256, embed_dim=32, resolution=64, ch=32, ch_mult=(1, 2, 2), z_channels=32),
        gpt=dict(n_layer=4, n_head=4, n_embd=128), n_classes=13,
        ce=ExtractorConfig("ce", in_channels=32, grid=16, width=64, n_classes=13, fc_width=512),
        re=ExtractorConfig("re", in_channels=32, grid=16, width=64, n_classes=13, fc_width=256),
        recipe="mini", baseline_batch=8, decode_batch=16, train_steps=3, samples=20, captum_images=4, authors_images=2,
        judge="resnet18", judge_batch=8, judge_px=224,
    ),
    "paper": Size(  # taming's ImageNet cin transformer: VQGAN f16 K=16384, GPT 48 x 1536 (1.4B)
        vqgan=dict(n_embed=16384, embed_dim=256, resolution=256, ch=128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2,
                   z_channels=256, attn_resolutions=(16,)),
        gpt=dict(n_layer=48, n_head=24, n_embd=1536), n_classes=1000,
        ce=ExtractorConfig("ce", in_channels=256, grid=16, width=512, n_classes=1000),
        re=ExtractorConfig("re", in_channels=256, grid=16, width=512, n_classes=1000),
        recipe="paper", baseline_batch=64, decode_batch=32, train_steps=6, samples=20, captum_images=8, authors_images=2,
        judge="resnet50", judge_batch=64, judge_px=224,
    ),
}


@dataclass
class Clock:
    """Wall time of device work (synchronising CUDA), and a budget for the optional measurements."""

    device: torch.device
    budget_s: float
    repeats: int = 1  # timed calls per measurement; the median is reported
    start: float = field(default_factory=time.perf_counter)
    first_s: float = 0.0  # seconds of the last measurement's untimed first call (compilation included)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def time(self, fn: Callable[[], Any], repeats: int | None = None) -> tuple[float, Any]:
        """Median seconds per call of fn (after one untimed warm-up call, kept in `first_s`), and its last output."""
        self.sync()
        start = time.perf_counter()
        out = fn()
        self.sync()
        self.first_s = time.perf_counter() - start
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
    """TFLOP/s of a large square matmul: the device's practical peak for that dtype (fp32: true fp32, no TF32)."""
    n = 8192 if device.type == "cuda" else 1024 if dtype == torch.float32 else 256  # CPU bf16 may be emulated: keep it short
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    clock = Clock(device, 0)
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        seconds, _ = clock.time(lambda: a @ b, repeats=10 if device.type == "cuda" else 5)
    finally:
        torch.set_float32_matmul_precision(before)
    return 2 * n ** 3 / seconds / 1e12


def precisions_for(peaks: dict[str, float]) -> tuple[str, ...]:
    """fp32, and bf16 only where the device computes it natively (a CPU without bf16 units emulates it ~50x slower)."""
    return ("fp32", "bf16") if peaks["bf16_tflops"] >= 0.5 * peaks["fp32_tflops"] else ("fp32",)


def build_generator(size: Size, device: torch.device) -> TamingVQGM:
    """The taming Net2NetTransformer of this size, random init, built directly on the device."""
    cfg = net2net_config(n_classes=size.n_classes, **size.vqgan, **size.gpt)
    torch.manual_seed(0)
    with torch.device(device), contextlib.redirect_stdout(io.StringIO()):
        net = build_net(cfg).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return TamingVQGM(net, OmegaConf.create(cfg), device)


def build_llamagen(gpt_model: str, image_size: int, device: torch.device) -> LlamaGenVQGM:
    """A LlamaGen of the released size `gpt_model` with the VQ-16 tokenizer at `image_size` px, random (seeded):
    built on the meta device, materialised on `device` with `to_empty`, then initialised (`llamagen.seeded_init`)."""
    vq_cfg = llamagen.VQ_MODELS[LLAMAGEN_DOWNSAMPLE]
    if image_size < vq_cfg.downsample or image_size % vq_cfg.downsample:
        raise SystemExit(f"--image-size must be a positive multiple of the VQ's downsampling {vq_cfg.downsample}, got {image_size}")
    gpt_cfg = replace(llamagen.GPT_MODELS[gpt_model], vocab_size=vq_cfg.codebook_size, grid=image_size // vq_cfg.downsample)
    spec = llamagen.LlamaGenSpec(gpt=gpt_cfg, vq=vq_cfg, image_size=image_size, gpt_name=gpt_model)
    with torch.device("meta"):
        gpt, vq = llamagen.LlamaGenGPT(gpt_cfg), llamagen.LlamaGenVQ(vq_cfg)
    gpt = llamagen.seeded_init(gpt.to_empty(device=device), 0, device)
    vq = llamagen.seeded_init(vq.to_empty(device=device), 1, device)
    gpt.rope = llamagen.rope_table(gpt_cfg).to(device)  # a buffer `to_empty` left uninitialised
    return LlamaGenVQGM(gpt.eval().requires_grad_(False), vq.eval().requires_grad_(False), spec, device)


def llamagen_size(size: Size, vqgm: LlamaGenVQGM) -> Size:
    """The size's extractors on LlamaGen's embeddings: in_channels its code width (8), grid its token grid."""
    return replace(size, ce=replace(size.ce, in_channels=vqgm.embed_dim, grid=vqgm.grid),
                   re=replace(size.re, in_channels=vqgm.embed_dim, grid=vqgm.grid))


def prior_of(vqgm: AnyVQGM) -> torch.nn.Module:
    """The generator's GPT (the prior the sampler runs)."""
    return vqgm.gpt if isinstance(vqgm, LlamaGenVQGM) else vqgm.net.transformer


def _module_default(module: Any, device: torch.device, fallback: str) -> str:
    """A stage's default precision on `device`: its module's `default_precision(device)` where it has one
    (the commands call it when no --precision is named), else the settings' own default."""
    rule = getattr(module, "default_precision", None)
    return rule(device) if callable(rule) else fallback


def product_defaults(vqgm: AnyVQGM, size: Size, device: torch.device) -> dict[str, Any]:
    """What the commands run when nothing is named: sampler, precision and batch rule of each stage.

    generate: `generation.default_sampler` (the model's sampler: philox noise) in the generation default
    precision; its batch is `generation.default_batch_size` at the moment of sampling (it reads the free memory).
    index: `SaliencySettings()` at `attribution.default_precision(device)`, `indexing.default_batch_size` images
    a call, `attribution.default_chunk` noisy copies a pass. train: `TrainConfig()` (the mini recipe for the mini
    sizes) in its precision, its batch.
    """
    sampler = generation.default_sampler(vqgm)
    sampler = replace(sampler, precision=_module_default(generation, device, sampler.precision))
    saliency = SaliencySettings(samples=size.samples)
    saliency = replace(saliency, precision=_module_default(attribution, device, saliency.precision))
    tc = TrainConfig.mini() if size.recipe == "mini" else TrainConfig()
    train_precision = _module_default(training, device, tc.precision)
    return {
        "generate": {"sampler": asdict(sampler), "label": sampler.label(), "precision": sampler.precision,
                     "batch_rule": "generation.default_batch_size" if size.gen_batch is None else "fixed (tiny size)",
                     "compile": sampler_module.compile_mode(device)},
        "index": {"precision": saliency.precision, "noise": saliency.noise, "samples": saliency.samples,
                  "batch": size.saliency_batch or indexing.default_batch_size(device), "chunk": default_chunk(device),
                  "batch_rule": "indexing.default_batch_size" if size.saliency_batch is None else "fixed (tiny size)"},
        "train": {"precision": train_precision, "batch": size.train_batch or tc.batch_size, "recipe": size.recipe,
                  "batch_rule": f"TrainConfig{'.mini' if size.recipe == 'mini' else ''}().batch_size" if size.train_batch is None
                  else "fixed (tiny size)"},
        "decode + judge": {"precision": "fp32"},
    }


def _sampler(defaults: dict[str, Any], **changes: Any) -> SamplerSettings:
    return replace(SamplerSettings(**defaults["generate"]["sampler"]), **changes)


def compiled(vqgm: AnyVQGM, precision: str) -> bool | None:
    """Whether the decode steps of the sampler's `precision` decoder ran compiled (None: compiling is off here, or no
    step was made); False where a compile failed and the sampler fell back to eager (it warned once)."""
    decoder = vqgm._decoders.get(precision)  # noqa: SLF001
    steps = list(decoder.__dict__.get("_decode_steps", {}).values()) if decoder is not None else []  # sampler.decode_step's
    steps = [step for step in steps if step.mode != "off"]
    return all(step.fn != step.eager for step in steps) if steps else None


def release_decoder(vqgm: AnyVQGM, precision: str) -> None:
    """Drop the sampler's decoder of `precision` with its static KV caches and compiled steps, so the next batch rule
    sees the memory of a process that samples in one precision only, as a command does (a benchmark's concern)."""
    decoder = vqgm._decoders.pop(precision, None)  # noqa: SLF001
    if decoder is None:
        return
    del decoder
    torch._dynamo.reset()
    gc.collect()
    if vqgm.device.type == "cuda":
        torch.cuda.empty_cache()


def bench_generation(vqgm: AnyVQGM, size: Size, clock: Clock, precisions: tuple[str, ...], defaults: dict[str, Any],
                     baselines: bool) -> dict[str, Any]:
    """The product rows (philox, the product's batch, each precision; the default first) and the baselines."""
    device = vqgm.device
    steps = vqgm.grid ** 2
    default = defaults["generate"]["precision"]
    out: dict[str, Any] = {"gpt_parameters": sum(p.numel() for p in prior_of(vqgm).parameters()), "steps": steps,
                           "sampler": defaults["generate"]["label"], "compile": defaults["generate"]["compile"],
                           "product_precision": default, "product_batch": None, "product_grids_per_s": None,
                           "product_by_precision": {}, "rows": []}

    def call(settings: SamplerSettings, batch: int) -> Callable[[], torch.Tensor]:
        """One `generate` batch: classes and splits mixed, streams from the images' identities, grids to the host."""
        classes = [ClassName(i % vqgm.n_classes, f"class {i % vqgm.n_classes}") for i in range(batch)]
        splits = [generation.SPLITS[i % len(generation.SPLITS)] for i in range(batch)]
        seeds = list(range(batch))
        return lambda: vqgm.sample(classes, image_streams(settings, MODEL_NAME, classes, splits, seeds), settings).cpu()

    def row(sampler: str, precision: str, batch: int, product: bool, fn: Callable[[], Any]) -> dict[str, Any]:
        try:
            seconds, _ = clock.time(fn)
        except torch.OutOfMemoryError as exc:  # the batch rule asked for more than the device holds: a finding, not a crash
            r = {"sampler": sampler, "precision": precision, "batch": batch, "product": product, "grids_per_s": None,
                 "error": f"out of memory: {str(exc).splitlines()[0][:300]}"}
            out["rows"].append(r)
            print(f"  generate {sampler} {precision} batch {batch}: {r['error']}", flush=True)
            release_decoder(vqgm, precision)
            return r
        r = {"sampler": sampler, "precision": precision, "batch": batch, "product": product, "grids_per_s": batch / seconds,
             "tokens_per_s": batch * steps / seconds, "seconds_per_call": seconds, "first_call_s": clock.first_s}
        out["rows"].append(r)
        print(f"  generate {sampler:24s} {precision} batch {batch:5d}: {r['grids_per_s']:9.3f} grids/s "
              f"({seconds:.3g} s a call, first call {clock.first_s:.3g} s){'  <- product' if product else ''}", flush=True)
        return r

    def skipped(sampler: str, precision: str, batch: int | None, product: bool, why: str) -> None:
        out["rows"].append({"sampler": sampler, "precision": precision, "batch": batch, "product": product, "grids_per_s": None,
                            "skipped": why})
        print(f"  generate {sampler} {precision}: skipped ({why})", flush=True)

    for precision in sorted(precisions, key=lambda p: p != default):  # the default first: it always runs
        if precision != default and clock.left() <= 0:
            skipped("philox", precision, None, True, "time budget spent")
            continue
        settings = _sampler(defaults, precision=precision)
        batch = size.gen_batch or generation.default_batch_size(vqgm, settings, device)
        r = row("philox", precision, batch, True, call(settings, batch))
        if r["grids_per_s"] is None:
            out["product_by_precision_errors"] = {**out.get("product_by_precision_errors", {}), precision: r["error"]}
            continue
        r["compiled"] = compiled(vqgm, precision)
        out["product_by_precision"][precision] = {"batch": batch, "grids_per_s": r["grids_per_s"], "first_call_s": r["first_call_s"],
                                                  "compiled": r["compiled"]}
        if precision == default:
            out["product_batch"], out["product_grids_per_s"] = batch, r["grids_per_s"]
        release_decoder(vqgm, precision)
    if baselines:
        b = size.baseline_batch
        base = _sampler(defaults, precision="fp32")
        host = _sampler(defaults, noise="host", precision="fp32")
        if clock.left() > 0:
            row("host", "fp32", b, False, call(host, b))
        else:
            skipped("host", "fp32", b, False, "time budget spent")
        if isinstance(vqgm, TamingVQGM):  # taming's own sampler: a baseline of taming's model only
            if clock.left() > 0:
                taming_shim.install()  # taming's mingpt imports a helper that current transformers no longer has
                from taming.modules.transformer.mingpt import sample_with_past

                _, cond = vqgm.net.encode_to_c(torch.arange(b, device=device)[:, None] % vqgm.n_classes)
                top_p = base.top_p if base.top_p < 1.0 else None
                row("taming_sample_with_past", "fp32", b, False,
                    lambda: sample_with_past(cond, vqgm.net.transformer, steps=steps, top_k=base.top_k, top_p=top_p).cpu())
            else:
                skipped("taming_sample_with_past", "fp32", b, False, "time budget spent")
        if clock.left() > 0:  # on CUDA another compile: the least needed row, so the last
            row("philox", "fp32", b, False, call(base, b))["compiled"] = compiled(vqgm, "fp32")
            release_decoder(vqgm, "fp32")
        else:
            skipped("philox", "fp32", b, False, "time budget spent")
    rate = {(r["sampler"], r["batch"]): r["grids_per_s"] for r in out["rows"] if r.get("grids_per_s") and not r["product"]}
    rate_host, rate_taming = rate.get(("host", size.baseline_batch)), rate.get(("taming_sample_with_past", size.baseline_batch))
    same = rate.get(("philox", size.baseline_batch))
    out["product_over_host"] = out["product_grids_per_s"] / rate_host if rate_host else None
    out["product_over_taming"] = out["product_grids_per_s"] / rate_taming if rate_taming else None
    out["philox_over_host_same_batch"] = same / rate_host if same and rate_host else None
    out["philox_over_taming_same_batch"] = same / rate_taming if same and rate_taming else None
    return out


def bench_decode(vqgm: AnyVQGM, size: Size, clock: Clock, precisions: tuple[str, ...]) -> dict[str, float]:
    """VQGAN decode images/s (fp32 as the commands decode PNGs; bf16 autocast as a what-if)."""
    tokens = torch.randint(0, vqgm.n_embed, (size.decode_batch, vqgm.grid, vqgm.grid), device=vqgm.device)
    out = {}
    for precision in precisions:
        def decode():
            with training.autocast(vqgm.device.type, precision):
                return vqgm.decode_tokens(tokens, batch_size=size.decode_batch)
        seconds, _ = clock.time(decode)
        out[f"{precision}_images_per_s"] = size.decode_batch / seconds
    print("  decode: " + ", ".join(f"{p} {out[f'{p}_images_per_s']:.2f}" for p in precisions) + " images/s", flush=True)
    return out


def bench_saliency(cfg: ExtractorConfig, vqgm: AnyVQGM, size: Size, clock: Clock, peaks: dict[str, float],
                   precisions: tuple[str, ...], defaults: dict[str, Any], baselines: bool) -> dict[str, Any]:
    """The index's per-batch work (product rows), `token_saliency` alone, and the baselines, on one random extractor."""
    device = vqgm.device
    torch.manual_seed(0)
    net = build_extractor(cfg).to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    prepared = prepare_extractor(net)
    index = defaults["index"]
    n = index["batch"]
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, vqgm.n_embed, (n, vqgm.grid, vqgm.grid), generator=gen)  # on the host, as the store gives them
    image_ids = list(range(1, n + 1))
    targets, keys = [i % cfg.n_classes for i in range(n)], [1_000_003 * i + 7 for i in range(n)]
    with torch.no_grad():
        resident = vqgm.embed(tokens)
    out: dict[str, Any] = {"images_per_call": n, "samples": size.samples, "chunk": index["chunk"], "noise": index["noise"],
                           "default_precision": index["precision"]}

    def product(settings: SaliencySettings) -> Callable[[], Any]:
        """One `index` batch: embed, token_saliency, the rows the writer thread is handed (writes: `write_stage`)."""
        def run():
            with torch.no_grad():
                emb = vqgm.embed(tokens)
            tsv = token_saliency(prepared, emb, targets, keys, settings, codebook=vqgm.codebook)
            return indexing.index_rows(0, image_ids, tokens, tsv, settings.top_n)
        return run

    flops = 2 * forward_flops(cfg) * size.samples  # per image: forward + gradient to the input, N copies
    for precision in precisions:
        settings = SaliencySettings(samples=size.samples, precision=precision, noise=index["noise"])
        seconds, _ = clock.time(product(settings))
        out[f"product_{precision}_images_per_s"] = n / seconds
        seconds, _ = clock.time(lambda: token_saliency(prepared, resident, targets, keys, settings))
        out[f"ours_{precision}_images_per_s"] = n / seconds
        for kind in ("product", "ours"):
            out[f"{kind}_{precision}_tflops"] = flops * out[f"{kind}_{precision}_images_per_s"] / 1e12
        out[f"{precision}_share_of_matmul_peak"] = out[f"product_{precision}_tflops"] / peaks[f"{precision}_tflops"]
    chunk = min(size.samples * n, index["chunk"])
    x = torch.randn(chunk, cfg.in_channels, cfg.grid, cfg.grid, device=device).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), attribution.common.autocast(device, "fp32"):
        seconds, _ = clock.time(lambda: prepared(x))
    out["forward_ceiling_tflops"] = forward_flops(cfg) * chunk / seconds / 1e12
    out["fp32_share_of_forward_ceiling"] = out["product_fp32_tflops"] / out["forward_ceiling_tflops"]
    default = index["precision"] if index["precision"] in precisions else "fp32"
    if baselines:
        if clock.left() > 0:  # the older noise: per-image generators on the host, copied to the device
            seconds, _ = clock.time(product(SaliencySettings(samples=size.samples, precision=default, noise="host")))
            out[f"host_noise_{default}_images_per_s"] = n / seconds
            out["product_over_host_noise"] = out[f"product_{default}_images_per_s"] / out[f"host_noise_{default}_images_per_s"]
        else:
            out["host_noise"] = "skipped: time budget spent"
        m = min(size.captum_images, n)
        try:
            seconds, _ = clock.time(lambda: captum_smoothgrad(net, resident[:m], targets[:m], size.samples, 0.2, batch=size.samples))
            out["captum_images_per_s"] = m / seconds
            out["ours_over_captum"] = out["ours_fp32_images_per_s"] / out["captum_images_per_s"]
        except ImportError:
            out["captum_images_per_s"] = None
            out["captum"] = "not installed (pip install -e '.[bench]')"
        k = min(size.authors_images, n)
        seconds, _ = clock.time(lambda: authors_algorithm(net, resident[:k], targets[:k], size.samples, 0.2))
        out["authors_images_per_s"] = k / seconds
        out["ours_over_authors"] = out["ours_fp32_images_per_s"] / out["authors_images_per_s"]
    print(f"  saliency {cfg.arch}: product " + ", ".join(f"{p} {out[f'product_{p}_images_per_s']:.2f}" for p in precisions)
          + (f", host noise {out[f'host_noise_{default}_images_per_s']:.2f}" if f"host_noise_{default}_images_per_s" in out else "")
          + (f", captum {out['captum_images_per_s']:.2f}" if out.get("captum_images_per_s") else "")
          + (f", authors {out['authors_images_per_s']:.2f}" if "authors_images_per_s" in out else "")
          + f" images/s; fp32 {out['product_fp32_tflops']:.3f} TFLOP/s = {out['fp32_share_of_forward_ceiling']:.0%} of the"
          f" forward ceiling, {out['fp32_share_of_matmul_peak']:.0%} of the matmul peak", flush=True)
    return out


def bench_training(cfg: ExtractorConfig, vqgm: AnyVQGM, size: Size, clock: Clock, precisions: tuple[str, ...],
                   defaults: dict[str, Any]) -> dict[str, Any]:
    """Images/s of the product's loop (`train_epoch`), of the benchmark's ideal loop, and of `validate`, per precision."""
    device = vqgm.device
    batch, steps = defaults["train"]["batch"], size.train_steps
    tc = TrainConfig(batch_size=batch)
    fmt = memory_format(device.type)
    n = batch * steps
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, vqgm.n_embed, (n, vqgm.grid, vqgm.grid), generator=gen, dtype=torch.int32)  # SplitData's dtype
    labels = torch.randint(0, cfg.n_classes, (n,), generator=gen)
    resident = keeps_resident(tokens.numel() * tokens.element_size() + labels.numel() * labels.element_size(), device)
    if resident:
        tokens, labels = tokens.to(device), labels.to(device)
    order = torch.randperm(n, generator=gen).to(tokens.device)
    batches = [(i, i + batch) for i in range(0, n, batch)]
    out: dict[str, Any] = {"batch": batch, "steps_per_call": steps, "tokens_resident": resident,
                           "default_precision": defaults["train"]["precision"]}

    def fresh() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(0)
        net = build_extractor(cfg).to(device, memory_format=fmt).train()
        return net, make_optimizer(net, tc, device.type)

    for precision in precisions:
        net, opt = fresh()

        def product() -> float:
            loss_sum, _, _ = train_epoch(net, opt, vqgm, tokens, labels, order, batches, device=device, precision=precision)
            return float(loss_sum)  # the epoch's one read, as train_extractor does
        seconds, _ = clock.time(product)
        out[f"product_{precision}_images_per_s"] = n / seconds
        seconds, _ = clock.time(lambda: validate(net, vqgm, tokens, labels, batch, device=device, precision=precision))
        out[f"validate_{precision}_images_per_s"] = n / seconds

        net, opt = fresh()
        x = torch.randn(batch, cfg.in_channels, cfg.grid, cfg.grid, device=device).contiguous(memory_format=fmt)
        y = torch.randint(0, cfg.n_classes, (batch,), device=device)

        def bench() -> None:
            for _ in range(steps):
                with training.autocast(device.type, precision):
                    loss = torch.nn.functional.cross_entropy(net(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        seconds, _ = clock.time(bench)
        out[f"bench_{precision}_images_per_s"] = n / seconds
        out[f"product_over_bench_{precision}"] = out[f"product_{precision}_images_per_s"] / out[f"bench_{precision}_images_per_s"]
    print(f"  train {cfg.arch} batch {batch}: " + "; ".join(
        f"{p} product {out[f'product_{p}_images_per_s']:.1f} (bench {out[f'bench_{p}_images_per_s']:.1f}, "
        f"{out[f'product_over_bench_{p}']:.0%}), validate {out[f'validate_{p}_images_per_s']:.1f}" for p in precisions)
        + " images/s", flush=True)
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
                with training.autocast(device.type, precision):
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


def stage_rates(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per stage of the paper's job, its work items per second through the product's paths, per precision measured.

    generate: the product row (philox, the product's batch) of each precision; train: `train_epoch` images/s with each
    epoch's validation folded in (1 / (1/train + (val images / train images) / validate)); index: the index's per-batch
    work; decode + judge: one decode and one judge call per image, in turn. A stage not (yet) measured has none.
    """
    gen, train, sal = results.get("generation") or {}, results.get("training") or {}, results.get("saliency") or {}
    rates: dict[str, dict[str, float]] = {"generate": {p: v["grids_per_s"] for p, v in gen.get("product_by_precision", {}).items()}}
    for arch in ("CE", "RE"):
        t, s = train.get(arch.lower()) or {}, sal.get(arch.lower()) or {}
        job = PAPER_JOB[f"train {arch}"]
        rates[f"train {arch}"] = {p: 1 / (1 / t[f"product_{p}_images_per_s"] + job["val_images"] / job["images"] / t[f"validate_{p}_images_per_s"])
                                  for p in PRECISIONS if f"product_{p}_images_per_s" in t}
        rates[f"index {arch}"] = {p: s[f"product_{p}_images_per_s"] for p in PRECISIONS if f"product_{p}_images_per_s" in s}
    decode, judge = results.get("decode") or {}, results.get("judge") or {}
    rates["decode + judge"] = {p: 1 / (1 / decode[f"{p}_images_per_s"] + 1 / judge[f"{p}_images_per_s"])
                               for p in PRECISIONS if f"{p}_images_per_s" in decode and f"{p}_images_per_s" in judge}
    return rates


def stage_work(stage: str) -> int:
    job = PAPER_JOB[stage]
    return job["grids"] if "grids" in job else job.get("epochs", 1) * job["images"]


def default_precisions(results: dict[str, Any]) -> dict[str, str]:
    """The precision each stage runs in when the command names none (`product_defaults`)."""
    product = results["product"]
    return {"generate": product["generate"]["precision"], "train CE": product["train"]["precision"],
            "train RE": product["train"]["precision"], "index CE": product["index"]["precision"],
            "index RE": product["index"]["precision"], "decode + judge": product["decode + judge"]["precision"]}


def project(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Hours per stage of the paper's job at the measured product rates: per precision, and at each stage's default.

    Index stages take max(compute, database writes) where `results["write_stage"]` gives a write rate;
    `bound_by{,_bf16,_default}{,_8_gpus}` say which: "compute" or "database"; None for an index stage whose write
    rate is not given (its hours are compute only). 8 GPUs: the 1-device compute / 8 (linear scaling, assumed).
    Hours of a stage or precision not measured are None, and so is any total they enter.
    """
    write = results.get("write_stage") or {"given": False}
    rates, defaults = stage_rates(results), default_precisions(results)
    rows = []
    for stage in PAPER_JOB:
        work, rate = stage_work(stage), rates[stage]
        row: dict[str, Any] = {"stage": stage, "work": work, "default_precision": defaults[stage]}
        writes = (True if write.get("given") else None) if stage in INDEX_STAGES else False
        row["hours_write"] = work / write["images_per_s_1_device"] / 3600 if writes else None
        row["hours_write_8_gpus"] = work / write["images_per_s_8_gpus"] / 3600 if writes else None
        if stage in INDEX_STAGES and not writes:
            row["write_stage"] = "not given"
        for p in (*PRECISIONS, "default"):
            q = defaults[stage] if p == "default" else p
            row[f"rate_{p}"] = rate.get(q)
            compute = work / rate[q] / 3600 if q in rate else None
            row[f"hours_{p}_compute"] = compute
            row[f"hours_{p}_compute_8_gpus"] = compute / 8 if compute is not None else None
            suffix = "" if p == "fp32" else f"_{p}"
            row[f"hours_{p}"], row[f"bound_by{suffix}"] = _bound(compute, row["hours_write"], writes)
            row[f"hours_{p}_8_gpus"], row[f"bound_by{suffix}_8_gpus"] = _bound(row[f"hours_{p}_compute_8_gpus"], row["hours_write_8_gpus"],
                                                                              writes)
        rows.append(row)
    total: dict[str, Any] = {"stage": "total", "work": None, "rate_fp32": None, "rate_bf16": None, "rate_default": None}
    for p in (*PRECISIONS, "default"):
        for key in (f"hours_{p}", f"hours_{p}_8_gpus"):
            total[key] = sum(r[key] for r in rows) if all(r[key] is not None for r in rows) else None
    return rows + [total]


# Issue 29's bars on the GPU, at paper size and the product's defaults: (key, how it is compared, threshold, what it is).
BARS = (
    ("generation_grids_per_s", ">=", 150.0, "generation, grids/s per GPU at the product's batch and default precision"),
    ("saliency_ce_bf16_images_per_s", ">=", 1500.0, "saliency CE (the index's per-batch work), bf16, images/s"),
    ("saliency_ce_fp32_share_of_matmul_peak", ">=", 0.90, "saliency CE in true fp32: achieved TFLOP/s / the fp32 matmul peak of this run"),
    ("saliency_re_bf16_images_per_s", ">=", 600.0, "saliency RE (the index's per-batch work), bf16, images/s"),
    ("training_ce_fp32_product_over_bench", ">=", 0.70, "train CE: the product's loop / the benchmark's loop, fp32"),
    ("training_ce_bf16_product_over_bench", ">=", 0.70, "train CE: the product's loop / the benchmark's loop, bf16"),
    ("training_re_fp32_product_over_bench", ">=", 0.70, "train RE: the product's loop / the benchmark's loop, fp32"),
    ("training_re_bf16_product_over_bench", ">=", 0.70, "train RE: the product's loop / the benchmark's loop, bf16"),
    ("total_hours_8_gpus", "<=", 1.0, "the paper's job on one 8-GPU node at the product's defaults, writes included, hours"),
)


def bar_values(results: dict[str, Any]) -> dict[str, float | None]:
    gen, sal, train = results.get("generation") or {}, results.get("saliency") or {}, results.get("training") or {}
    ce, re = sal.get("ce") or {}, sal.get("re") or {}
    values: dict[str, float | None] = {
        "generation_grids_per_s": gen.get("product_grids_per_s"),
        "saliency_ce_bf16_images_per_s": ce.get("product_bf16_images_per_s"),
        "saliency_ce_fp32_share_of_matmul_peak": ce.get("fp32_share_of_matmul_peak"),
        "saliency_re_bf16_images_per_s": re.get("product_bf16_images_per_s"),
        "total_hours_8_gpus": results.get("total_hours_8_gpus"),
    }
    for arch in ("ce", "re"):
        for p in PRECISIONS:
            values[f"training_{arch}_{p}_product_over_bench"] = (train.get(arch) or {}).get(f"product_over_bench_{p}")
    return values


def bars(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each bar with its measured value and `status`: 'pass', 'fail', or 'not measured' (a CPU run checks code paths,
    not bars; the bars are set at paper size; or the value was not measured), `note` saying why."""
    values = bar_values(results)
    model = results.get("model")  # absent for taming, the paper's model
    why = ("a CPU run exercises the code paths; the bars are for the GPU" if results.get("device") != "cuda"
           else f"the bars are set for the paper's taming model, this is {describe_model(model)}" if model is not None
           else None if results.get("size") == "paper" else f"the bars are set at paper size, this is {results.get('size')}")
    out = {}
    for key, op, threshold, what in BARS:
        value = values.get(key)
        entry: dict[str, Any] = {"bar": f"{op} {threshold:g}", "what": what, "value": value}
        if why is not None or value is None:
            entry["status"], entry["note"] = "not measured", why or "not measured in this run (skipped or cut short)"
        else:
            entry["status"] = "pass" if (value >= threshold if op == ">=" else value <= threshold) else "fail"
        out[key] = entry
    return out


def describe_model(model: dict[str, Any] | None) -> str:
    """The JSON's `model` in words: 'llamagen GPT-L at 384 px'; taming (no `model`) is the paper's model."""
    return "taming" if model is None else f"{model['backend']} {model['gpt_model']} at {model['image_size']} px"


KEY_ORDER = ("date", "device", "device_name", "size", "model", "complete", "seconds", "product", "generation", "generate_grids_per_s",
             "saliency_ce", "saliency_re", "training_ce", "training_re", "validation_ce", "validation_re", "decode_judge",
             "total_hours_1_gpu", "total_hours_8_gpus", "total_hours_8_gpus_fp32", "total_hours_8_gpus_bf16", "bars", "projection")


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """The projection, the per-stage rates at the product's defaults, the totals and the bars, from what is measured."""
    defaults = default_precisions(results)
    rates = stage_rates(results)
    results["projection"] = rows = project(results)
    total = rows[-1]
    gen = results.get("generation") or {}
    results["generate_grids_per_s"] = gen.get("product_grids_per_s")
    for arch in ("ce", "re"):
        sal, train = (results.get("saliency") or {}).get(arch) or {}, (results.get("training") or {}).get(arch) or {}
        results[f"saliency_{arch}"] = sal.get(f"product_{defaults[f'index {arch.upper()}']}_images_per_s")
        results[f"training_{arch}"] = train.get(f"product_{defaults[f'train {arch.upper()}']}_images_per_s")
        results[f"validation_{arch}"] = train.get(f"validate_{defaults[f'train {arch.upper()}']}_images_per_s")
    results["decode_judge"] = rates["decode + judge"].get(defaults["decode + judge"])
    results["total_hours_1_gpu"] = total["hours_default"]
    results["total_hours_8_gpus"] = total["hours_default_8_gpus"]
    results["total_hours_8_gpus_fp32"] = total["hours_fp32_8_gpus"]
    results["total_hours_8_gpus_bf16"] = total["hours_bf16_8_gpus"]
    results["bars"] = bars(results)
    ordered = {key: results[key] for key in KEY_ORDER if key in results} | results  # the headline first, then the rest
    results.clear()
    results.update(ordered)
    return results


def print_projection(results: dict[str, Any]) -> None:
    rows, write = results["projection"], results.get("write_stage")
    model = results.get("model")
    what = f"{results['size']}-size models" if model is None else f"{describe_model(model)}, {results['size']}-size extractors"
    print(f"\nProjected wall time (hours) of the paper's job, {what}, {results['device_name'] or results['device']};")
    print("8 GPUs: 1-device compute / 8 (linear scaling, assumed); '-': not measured")
    print(f"{'stage':14s} {'work':>10s} {'rate/s':>8s} {'h fp32':>8s} {'h bf16':>8s} {'h 8xfp32':>8s} {'h 8xbf16':>8s} {'bound 1/8':>9s}")

    def cell(value: float | None) -> str:
        return f"{value:8.3g}" if value is not None else f"{'-':>8s}"

    short = {"compute": "comp", "database": "db", None: "?"}
    for r in rows:
        work = f"{r['work']:,}" if r["work"] else ""
        rate = f"{r['rate_default']:.3g}" if r["rate_default"] else ""
        bound = f"{short[r.get('bound_by_default')]}/{short[r.get('bound_by_default_8_gpus')]}" if r["stage"] != "total" else ""
        print(f"{r['stage']:14s} {work:>10s} {rate:>8s} {cell(r['hours_fp32'])} {cell(r['hours_bf16'])} "
              f"{cell(r['hours_fp32_8_gpus'])} {cell(r['hours_bf16_8_gpus'])} {bound:>9s}".rstrip())
    print("rate/s and bound 1/8: at each stage's default precision, on 1 device / 8 GPUs: comp(ute) or d(ata)b(ase)")
    defaults = ", ".join(f"{r['stage']} {r['default_precision']}" for r in rows[:-1])
    total = rows[-1]
    print(f"at the product's defaults ({defaults}):")
    print(f"  {cell(total['hours_default']).strip()} h on one device, total_hours_8_gpus {cell(total['hours_default_8_gpus']).strip()}")
    if not write or not write.get("given"):
        print("write stage: not given (--write-rate or --write-json), so the index rows are")
        print("  saliency compute only and their bound is unknown ('?')")
    else:
        print(f"write stage: {write['source']}")
        print("  index stages take max(compute, writes): a writer thread overlaps compute")
        print(f"  1 device = 1 writer: {write['images_per_s_1_device']:.3g} images/s")
        four = write.get("images_per_s_4_writers") is not None
        print(f"  8 GPUs = 8 writers into one database: {write['images_per_s_8_gpus']:.3g} images/s: "
              + ("the 4-writer rate," if four else "the 1-writer rate,"))
        print("  the best measured multi-writer figure, not scaled to 8 writers" if four
              else "  not scaled (no multi-writer figure given)")
        for r in rows:
            if r["stage"] in INDEX_STAGES and r["hours_default_compute"] is not None:
                print(f"  {r['stage']}, 1 device: compute {r['hours_default_compute']:.3g} h, writes {r['hours_write']:.3g} h: "
                      f"{r['bound_by_default']}-bound")
                print(f"  {r['stage']}, 8 GPUs:   compute {r['hours_default_compute_8_gpus']:.3g} h, writes {r['hours_write_8_gpus']:.3g} h: "
                      f"{r['bound_by_default_8_gpus']}-bound")
    print("bars (issue 29):")
    for key, entry in results["bars"].items():
        value = entry["value"]
        shown = f"{value:.3g}" if isinstance(value, (int, float)) else "-"
        print(f"  {key:38s} {entry['bar']:>8s} {shown:>9s}  {entry['status']}")


def run(size_name: str, device: torch.device, budget_s: float, baselines: bool = True, repeats: int | None = None,
        write: dict[str, Any] | None = None, json_out: Path | None = None, precisions: str = "auto", model: str = "taming",
        gpt_model: str = "GPT-L", image_size: int = 384) -> dict[str, Any]:
    """Every measurement at one size on one device; the result dictionary that is written as JSON.

    `repeats`: timed calls per measurement (median); default 1 at paper size, 3 otherwise (a shared CPU is noisy).
    `write`: the index's database write stage (`write_stage`); not given by default. `json_out`: rewritten after
    every stage. `precisions`: 'auto' (bf16 where the device computes it natively), or a comma list ('fp32,bf16').
    `model`: 'taming' (the size's taming generator) or 'llamagen' (`gpt_model` at `image_size` px with VQ-16, and the
    size's extractors on its embeddings).
    """
    if model not in MODELS:
        raise SystemExit(f"--model must be one of {', '.join(MODELS)}, got {model!r}")
    size = SIZES[size_name]
    clock = Clock(device, budget_s, repeats=repeats or (1 if size_name == "paper" else 3))
    torch.set_grad_enabled(True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine() or "cpu"
    peaks = {"fp32_tflops": matmul_peak(device, torch.float32), "bf16_tflops": matmul_peak(device, torch.bfloat16)}
    what = f"{size_name} size" if model == "taming" else f"llamagen {gpt_model} at {image_size} px, {size_name}-size extractors,"
    print(f"== paper_scale: {what} on {device} ({name}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads; matmul peak fp32 {peaks['fp32_tflops']:.3g}, "
          f"bf16 {peaks['bf16_tflops']:.3g} TFLOP/s ==", flush=True)
    chosen = precisions_for(peaks) if precisions == "auto" else tuple(p for p in PRECISIONS if p in precisions.split(","))
    if "fp32" not in chosen:
        raise SystemExit(f"--precisions must include fp32 (the bars' and the baselines' precision), got {precisions!r}")
    if chosen == ("fp32",) and precisions == "auto":
        print("  bf16 not measured: this device's bf16 matmul is slower than half its fp32 (no native bf16)", flush=True)
    if model == "llamagen":
        vqgm = build_llamagen(gpt_model, image_size, device)
        size = llamagen_size(size, vqgm)
    else:
        vqgm = build_generator(size, device)
    defaults = product_defaults(vqgm, size, device)
    missing = sorted({d["precision"] for d in defaults.values()} - set(chosen))
    if missing:
        print(f"  note: the product's default precision {', '.join(missing)} is not measured here: the default-precision "
              f"projection is left open", flush=True)
    results: dict[str, Any] = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                               "device": device.type, "device_name": name, "size": size_name, "torch": torch.__version__,
                               "cuda_version": torch.version.cuda, "peaks": peaks, "precisions": list(chosen), "product": defaults,
                               "paper_job": PAPER_JOB, "write_stage": write or write_stage(), "complete": False}
    if model == "llamagen":  # taming's JSON is as it always was: no `model`
        results["model"] = {"backend": "llamagen", "gpt_model": gpt_model, "image_size": image_size}

    def checkpoint() -> None:
        results["seconds"] = round(time.perf_counter() - clock.start, 1)
        if json_out is not None:
            json_out.write_text(json.dumps(summarise(results), indent=2) + "\n")

    checkpoint()
    results["decode"] = bench_decode(vqgm, size, clock, chosen)
    results["judge"] = bench_judge(size, device, clock, chosen)
    checkpoint()
    results["saliency"] = {}
    for arch in ("ce", "re"):
        results["saliency"][arch] = bench_saliency(getattr(size, arch), vqgm, size, clock, peaks, chosen, defaults, baselines)
        checkpoint()
    results["training"] = {}
    for arch in ("ce", "re"):
        results["training"][arch] = bench_training(getattr(size, arch), vqgm, size, clock, chosen, defaults)
        checkpoint()
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()  # the generation batch rule reads the free memory
    results["generation"] = bench_generation(vqgm, size, clock, chosen, defaults, baselines)
    results["complete"] = True
    checkpoint()
    return summarise(results)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default=None,
                        help="[paper on a GPU, mini on a CPU]; with --model llamagen: the extractors, batches and repeats")
    parser.add_argument("--model", choices=MODELS, default="taming",
                        help="taming: the size's taming generator; llamagen: a LlamaGen GPT with the VQ-16 tokenizer [taming]")
    parser.add_argument("--gpt-model", choices=list(llamagen.GPT_MODELS), default=None,
                        help="--model llamagen: the released GPT size [GPT-L]")
    parser.add_argument("--image-size", type=int, default=None, help="--model llamagen: pixels per side, a multiple of 16 [384]")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument("--budget-s", type=float, default=240, help="skip optional measurements once this is spent [240]")
    parser.add_argument("--no-baselines", action="store_true",
                        help="skip the host sampler, taming's sample_with_past, host noise, Captum and the authors' loop")
    parser.add_argument("--precisions", default="auto", help="auto (bf16 where native), or a comma list such as fp32,bf16 [auto]")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per figure, median [paper 1, else 3]")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (0: torch's default; 1 is steadier on a shared CPU) [1 at tiny size on a CPU, else 0]")
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
    if args.model != "llamagen" and (args.gpt_model is not None or args.image_size is not None):
        parser.error("--gpt-model and --image-size are --model llamagen's")
    write = write_stage(args.write_rate, args.write_json, args.write_backend)
    if args.from_json:
        results = json.loads(args.from_json.read_text())
        if "product" not in results:
            raise SystemExit(f"{args.from_json}: written by an older paper_scale.py (no 'product' section: its rates are not the "
                             "product's paths); measure again")
        results["write_stage"] = write
        results["reprojected_from"] = str(args.from_json)
        summarise(results)
        print_projection(results)
        print(f"\nJSON: {args.json_out}")
        args.json_out.write_text(json.dumps(results, indent=2) + "\n")
        return
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    size = args.size or ("paper" if device.type == "cuda" else "mini")
    threads = torch.get_num_threads()
    if args.threads is None:  # tiny checks code paths in seconds: one thread, which a loaded CPU does not stall
        args.threads = 1 if size == "tiny" and device.type == "cpu" else 0
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        results = run(size, device, args.budget_s, baselines=not args.no_baselines, repeats=args.repeats, write=write,
                      json_out=args.json_out, precisions=args.precisions, model=args.model,
                      gpt_model=args.gpt_model or "GPT-L", image_size=args.image_size or 384)
    finally:
        torch.set_num_threads(threads)  # main() is also called in-process (the tests)
    print_projection(results)
    print(f"\n{results['seconds']:.0f} s in all; JSON: {args.json_out}")


if __name__ == "__main__":
    main()
