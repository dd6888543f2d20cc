"""The Python API: a `Workspace` (home, database, device) with one method per thing the CLI does.

    from cortex_cli import Workspace

    ws = Workspace(home="cortex-home")                 # the bundled mini model is always there
    ws.index("red-capped bird", images=20)             # generates the missing images first
    top = ws.top_tokens("red-capped bird", k=10, baseline="frequency")
    top.to_pandas()                                     # or top.to_dict(), or just `top` in a notebook

Inputs are plain values: class names or ids, paths, PIL images or image tensors. Results are frozen dataclasses
(`cortex_cli.core.results.Result`: `to_dict()` equals the CLI's `--json`, `to_pandas()`, an HTML table in a notebook);
pictures come back as paths to PNGs written where you asked. Errors are `CortexError` with one line that says what to
do. Long methods take `progress(done, total, info)`. Under torchrun, `generate`, `index` and `train_extractor` deal
their work to the ranks and return the whole job's result on every rank; the process group lives as long as the
workspace (`close()`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .images import generation
from .images.pictures import picture_path, picture_source, token_thumbnails
from .search.token_selection import OptimizeSettings, optimize_settings
from .index import build as indexing
from .attribution import SaliencySettings, saliency_settings
from .index.audit import DEFAULT_K as DEFAULT_AUDIT_K, DEFAULT_RESAMPLES as DEFAULT_AUDIT_RESAMPLES
from .models import concepts, registry as model_registry, subjects
from .models.concepts import ConceptInfo
from .models.subjects import Subject
from .core.distributed import DistContext, in_torchrun, torchrun_job
from .core.environment import home_override, resolve_device
from .core.errors import CortexError
from .extractors.registry import open_with_bundled
from .extractors.accuracy import ExtractorTests, TrainedExtractor
from .models.registry import ModelInfo, RegisteredModel
from .core.progress import Progress
from .core.results import attach_thumbnails
from .store.database import Store, check_url
from .models.targets import DEFAULT_RULE

SALIENCY = SaliencySettings()
ClassSpec = str | int | Sequence[str | int]


class Workspace:
    """cortex's state (home directory, database) and the device it computes on.

    Args:
        home: the state directory (checkpoints, reports, the default SQLite file); default `$CORTEX_HOME`,
            else the platform's per-user data directory.
        db: a SQLAlchemy URL, `sqlite:///path.db` or `postgresql+psycopg://user@host/cortex`; default
            `$CORTEX_DB`, else `cortex.db` in the home. Opened (and migrated) on first use.
        device: 'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'; under torchrun 'auto'/'cuda' mean cuda:LOCAL_RANK.

    Raises:
        CortexError: a malformed URL or an unknown or missing device (checked before anything is opened).
    """

    def __init__(self, home: str | Path | None = None, db: str | None = None, device: str = "auto") -> None:
        self.home = Path(home).expanduser() if home is not None else None
        self._db = check_url(db) if db is not None else None  # stripped; empty or malformed: CortexError
        self._device_spec = device
        self._device = None if in_torchrun() else resolve_device(device)  # under torchrun: the rank's, when the job starts
        self._stack = contextlib.ExitStack()
        self._store: Store | None = None
        self._dist: DistContext | None = None

    # -- the workspace itself -------------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        """Where models run (under torchrun: this rank's device)."""
        return self._device if self._device is not None else self._job().device

    @property
    def is_main(self) -> bool:
        """Whether this process is rank 0 of its torchrun job (always, without torchrun): the one that reports."""
        return not in_torchrun() or self._job().is_main

    @property
    def world_size(self) -> int:
        """Processes in this torchrun job (1 without torchrun)."""
        return self._job().world_size if in_torchrun() else 1

    @property
    def store(self) -> Store:
        """The opened database, migrated to the newest schema; the bundled mini model is registered on first use."""
        if self._store is None:
            with self._home():
                opener = functools.partial(open_with_bundled, self._db)  # the default URL is read when it opens, in the home
                self._store = self._job().main_first(opener) if in_torchrun() else opener()
        return self._store

    def close(self) -> None:
        """Close the database and leave the torchrun job (waiting for the other ranks)."""
        self._stack.close()
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is not None:  # an error: leave the job at once (the other ranks may never reach a barrier)
            self._stack.__exit__(*exc)
        self.close()

    def _job(self) -> DistContext:
        if self._dist is None:
            self._dist = self._stack.enter_context(torchrun_job(self._device_spec))
        return self._dist

    def _ranks(self) -> DistContext:
        """The torchrun job under torchrun, else this one process (rank 0 of 1) on the workspace's device."""
        return self._job() if in_torchrun() else DistContext(device=self.device)

    def _home(self) -> contextlib.AbstractContextManager:
        return home_override(self.home)

    def _model(self, name: str | None) -> ModelInfo:
        return model_registry.get_model(self.store, name)

    # -- models and data ------------------------------------------------------------------------------------------

    def model(self, name: str | None = None) -> ModelInfo:
        """A registered model by name (default: the bundled mini model)."""
        return self._model(name)

    def subject(self, name: str | int, *, model: str | None = None) -> Subject:
        """What a name or id stands for in a model: a class (a concept of one member) or a named concept."""
        return subjects.subject(self.store, self._model(model), name)

    def models(self) -> list[RegisteredModel]:
        """Every registered model with its classes (the bundled `mini` first)."""
        return model_registry.registered_models(self.store)

    def add_model(self, name: str, path: str | Path | None = None, *, backend: str = "taming", config: str | Path | None = None,
                  ckpt: str | Path | None = None, labels: str | None = None, gpt_ckpt: str | Path | None = None,
                  vq_ckpt: str | Path | None = None, gpt_model: str | None = None, image_size: int | None = None,
                  downsample: int | None = None) -> ModelInfo:
        """Register a model after loading it strictly (taming: `config` + `ckpt`; janus: `path`, a snapshot directory;
        llamagen: `gpt_ckpt` + `vq_ckpt`, `image_size`, and optionally `gpt_model` and `downsample`). Any file may be
        a Hugging Face Hub name, hf://OWNER/REPO/path."""
        files = model_registry.model_files(config, ckpt, vq_ckpt=vq_ckpt, gpt_ckpt=gpt_ckpt)
        options = {"gpt_model": gpt_model, "image_size": image_size, "downsample": downsample}  # None: not given
        with self._home():
            return model_registry.add_model(self.store, name, *files, labels, backend=backend, path=path, options=options)

    def concepts(self, *, model: str | None = None) -> list[ConceptInfo]:
        """The model's named concepts (unions of classes, prompts), by name."""
        return concepts.list_concepts(self.store, self._model(model))

    def add_concept(self, name: str, *, classes: ClassSpec | None = None, prompt: str | None = None,
                    model: str | None = None) -> ConceptInfo:
        """Name a concept: the union of `classes` ('a,b,c', a list, '@file.txt'), or a `prompt` (text-conditional models:
        a class sampled from the prompt verbatim). Afterwards the name works wherever a class name does."""
        return subjects.name_concept(self.store, self._model(model), name, classes=classes, prompt=prompt)

    def remove_concept(self, name: str, *, model: str | None = None) -> ConceptInfo:
        """Forget a concept (a prompt concept's own class goes with it, with its images and index rows)."""
        return concepts.remove_concept(self.store, self._model(model), name)

    def generate(self, classes: ClassSpec, images: int, *, model: str | None = None, split: str = "train", first_seed: int = 0,
                 batch_size: int | None = None, out: str | Path | None = None, top_k: int | None = None, top_p: float | None = None,
                 temperature: float | None = None, sampler: str | None = None, precision: str | None = None,
                 cfg_scale: float | None = None, progress: Progress | None = None) -> list[generation.GenerationResult]:
        """Sample image seeds `first_seed .. +images-1` of each class into the store (and PNGs into `out`); idempotent.

        All classes form one job dealt by image (`generation.generate_classes`); `batch_size` None: what the device holds.
        `sampler` 'philox' (default) or 'host' (older stores' sampler) and `precision` 'fp32' (default) or 'bf16' (philox
        only) are part of each image's identity; `cfg_scale`: classifier-free guidance of priors with a null class (llamagen;
        1: none; default: the model's)."""
        with self._home():
            info = self._model(model)
            return generation.generate_classes(self.store, info, subjects.classes(self.store, info, classes), images, split=split,
                                               seed=first_seed, batch_size=batch_size, out_dir=_path(out), top_k=top_k, top_p=top_p,
                                               temperature=temperature, noise=sampler, precision=precision, guidance=cfg_scale,
                                               device=self.device, progress=progress, dist=self._ranks())

    # -- the index and its questions --------------------------------------------------------------------------------

    def index(self, classes: ClassSpec, images: int = 100, *, model: str | None = None, extractor: str = "ce", split: str = "train",
              first_seed: int = 0, batch_size: int | None = None, score: str = DEFAULT_RULE, saliency: SaliencySettings | None = None,
              progress: Progress | None = None, **saliency_options: Any) -> list[indexing.IndexResult]:
        """Index the saliency (TSV maps and top-n tokens) of image seeds `first_seed .. +images-1` of each class.

        Missing images are generated first; images already indexed under the same run are skipped (a rerun resumes). The
        saliency is `saliency` (`SaliencySettings`) or its fields as keywords: method, samples, alpha, ig_steps/ig_baseline,
        top_n, reduce, precision (default: the device's), seed (keys the noise), noise ('philox', or 'host': older runs). A
        named concept indexes the same seeds of each member, explaining its score `score` ('logsumexp' or 'log-prob' of the
        members' logits; an extractor trained for it: its own) in a run of that target; one result per member."""
        settings = saliency_settings(self.device, saliency, **saliency_options)
        with self._home():
            return indexing.index_named(self.store, self._model(model), extractor, classes, settings, score=score, split=split,
                                        n_images=images, image_seed=first_seed, device=self.device, batch_size=batch_size,
                                        progress=progress, dist=self._ranks())

    def top_tokens(self, concept: str | int, k: int = 100, *, model: str | None = None, baseline: str | None = None,
                   images: int | None = None, extractor: str | None = None, method: str | None = None, run: int | None = None,
                   split: str = "train"):
        """T*_concept: the concept's k tokens most frequent in its images' top-n saliency sets, beside a ranking baseline.

        `baseline` 'frequency' (the paper's: most frequent over all positions) or 'specific' ranks the same images without an
        extractor; `images`: exactly seeds 0..N-1; the newest run unless `extractor`, `method` or `run` says which."""
        from .index.rankings import top_tokens

        info = self._model(model)
        result = top_tokens(self.store, info, subjects.subject(self.store, info, concept), extractor=extractor, k=k, baseline=baseline,
                            split=split, images=images, run=run, method=method)
        return attach_thumbnails(result, token_thumbnails(info, self.device))

    def audit(self, neutral: str | int, groups: str | Sequence[str | int], *, split: str = "test", k: int = DEFAULT_AUDIT_K,
              model: str | None = None, extractor: str | None = None, run: int | None = None, images: int | None = None,
              seed: int = 0, bootstrap: int = DEFAULT_AUDIT_RESAMPLES, contrast: bool = True, out: str | Path | None = None,
              progress: Progress | None = None):
        """Which of two groups the stored `split` images of `neutral` lean toward (the authors' bias detection); stored.

        `groups`: 'A,B' or a list of two classes or concepts; their T* (k tokens each, read as `top_tokens` reads it:
        `extractor`/`run`/`images`) less the shared tokens (with `contrast`, also those the other group's images hold as
        often) are counted in each image. Returns Cliff's delta and each group's share of leaning images with bootstrap 95%
        intervals (`bootstrap` resamples keyed by neutral, groups, split and `seed`); JSON and a plot go to `out` (default
        `$CORTEX_HOME/reports/<model>/`)."""
        from .index.audit import run_audit

        with self._home():
            return run_audit(self.store, self._model(model), neutral, groups, split=split, k=k, extractor=extractor, run=run, images=images,
                             seed=seed, resamples=bootstrap, contrast=contrast, device=self.device, out_dir=_path(out), progress=progress)

    def top_tokens_of(self, concepts: ClassSpec, k: int = 100, **options: Any) -> list:
        """`top_tokens` of several classes or concepts ('a,b,c', '@file.txt', 'all' or a list), one result each, in order."""
        return [self.top_tokens(t.ref, k, **options) for t in subjects.subjects(self.store, self._model(options.get("model")), concepts)]

    def token(self, token: int, *, top: int = 20, images: int | None = None, extractor: str | None = None, model: str | None = None,
              split: str = "train"):
        """Which classes use a codebook token most: as a salient token (the index) and as a plain occurrence."""
        from .index.rankings import token_usage

        return token_usage(self.store, self._model(model), token, top=top, extractor=extractor, split=split, images=images)

    def explain(self, image: str | Path | Image.Image | torch.Tensor, *, top_n: int = 10, out: str | Path | None = None,
                extractor: str = "ce", model: str | None = None, target: str | int | None = None, score: str = DEFAULT_RULE,
                saliency: SaliencySettings | None = None, **saliency_options: Any):
        """The top-n tokens of one picture (a cortex PNG's tokens, else the VQGAN's encoding); drawn to `out` if given.

        `target`: explain this class or named concept (its score `score`) instead of the PNG's (or predicted) class; the
        saliency is `saliency` or its fields as keywords, as `index` takes them."""
        from .index.explain import explain_png

        settings = saliency_settings(self.device, saliency, **saliency_options)
        with self._home(), picture_path(image) as path:
            result = explain_png(self.store, path, model_name=model, extractor_name=extractor, top_n=top_n, settings=settings,
                                 device=self.device, out=_path(out), target=target, score=score)
        return attach_thumbnails(result, token_thumbnails(self._model(result.model), self.device))

    def show(self, image: int | str | Path | Image.Image | torch.Tensor, out: str | Path | None, *, top_n: int = 5,
             extractor: str | None = None, model: str | None = None, seed: int = SALIENCY.seed, target: str | int | None = None,
             score: str = DEFAULT_RULE, noise: str = SALIENCY.noise):
        """Paper Figure 2: red boxes on an image's top-n tokens, written to `out` (None: the tokens only); a stored image id
        uses its index map. `target`: explain this class or named concept (its score `score`; its own runs when indexed)."""
        from .index.explain import show_picture

        with self._home(), picture_source(image) as source:
            return show_picture(self.store, source, model_name=model, extractor_name=extractor, top_n=top_n, out=_path(out),
                                device=self.device, settings=SaliencySettings(seed=seed, noise=noise), target=target, score=score)

    def image(self, image_id: int, *, model: str | None = None, out: str | Path | None = None):
        """A stored image: its identity, token grid and the index runs holding its map; `out` writes it as a cortex PNG."""
        from .images.stored import stored_image_out

        return stored_image_out(self.store, self._model(model), image_id, _path(out), self.device)

    def mask(self, image: int | str | Path | Image.Image | torch.Tensor, *, positions: Sequence[int] | None = None, top_n: int = 5,
             fill: str = "black", seed: int = 0, target: str | int | None = None, extractor: str | None = None,
             model: str | None = None, out: str | Path | None = None):
        """The judges' P(class) with some of an image's tokens masked, beside as many seeded random ones (Figure 3, one image).

        `image`: a stored image id or a picture; the masked positions are `positions` (row * m + col), else the image's
        `top_n` TSV positions (as `show` finds them, with `extractor`). `target`: the class the judges score (default: the
        image's own); `fill` 'black' (the paper's), 'mean', 'blur' or 'tokens'; `out` gets a strip."""
        from .judges.masked import mask_source

        with self._home(), picture_source(image) as source:
            return mask_source(self.store, source, positions=positions, top_n=top_n, fill=fill, seed=seed, target=target,
                               extractor_name=extractor, model_name=model, device=self.device, out=_path(out))

    def show_token(self, concept: str | int, token: int, out: str | Path, *, limit: int = 12, extractor: str | None = None,
                   model: str | None = None):
        """Paper Figure 5: a concept's indexed images with one token boxed wherever it is salient, written to `out`."""
        from .index.explain import show_token

        info = self._model(model)
        with self._home():
            return show_token(self.store, info, subjects.subject(self.store, info, concept), token, Path(out), extractor_name=extractor,
                              limit=limit, device=self.device)

    # -- optimisation ---------------------------------------------------------------------------------------------

    def edit(self, image: str | Path | Image.Image | torch.Tensor, target: str | int, region: str, *, model: str | None = None,
             extractor: str | None = None, out: str | Path | None = None, save_every: int | None = None,
             optimizer: OptimizeSettings | None = None, progress: Progress | None = None, **optimizer_options: Any):
        """Edit an image region's tokens toward a target class or named concept (paper §3.4, Figure 4); the edit is stored.

        `region`: a token rectangle 'R0:R1,C0:C1' (half-open), 'R,C' or 'all'. The optimiser is `optimizer` (`OptimizeSettings`)
        or its fields as keywords: `space` 'token' (Gumbel-Softmax token selection, the paper's) or 'embedding' (optimise E,
        snap to the nearest tokens: the baseline), steps (3000), lr, tau, tau_final, alpha, init ('source' or 'random'),
        objective, seed. A concept's objective is its score ('logit': logsumexp of its members' logits; 'log-prob': log P(concept))."""
        from .search.edit import edit_picture

        settings = optimize_settings(optimizer, **optimizer_options)
        if out is None and not isinstance(image, (str, Path)):
            raise CortexError("an edit of an in-memory image needs out= (a directory for the edited PNG and its strip)")
        with self._home(), picture_path(image) as path:
            return edit_picture(self.store, path, target, region, settings, model_name=model, extractor_name=extractor, out_dir=_path(out),
                                save_every=save_every, device=self.device, progress=progress)

    def optimize(self, concept: str | int, *, region: str = "all", init: str | Path | None = None, restarts: int | None = None,
                 model: str | None = None, extractor: str = "ce", k: int | None = None, out: str | Path | None = None,
                 optimizer: OptimizeSettings | None = None, progress: Progress | None = None, **optimizer_options: Any):
        """The tokens that best express a class or named concept from no input (paper §3.4, eq. 7-9), beside its salient
        tokens; stored. `init` is where the search starts ('random', 'noise' or a PNG); the optimiser is `optimizer` or its
        fields as keywords (steps, lr, tau, tau_final, alpha, objective, seed), as `edit` takes them."""
        from .search import concept_search

        settings = optimize_settings(optimizer or OptimizeSettings(steps=concept_search.DEFAULT_STEPS), **optimizer_options)
        with self._home():
            info = self._model(model)
            result = concept_search.search_named(self.store, info, concept, settings=settings, region=region, init=init, restarts=restarts,
                                                 extractor=extractor, k=k, out_dir=_path(out), device=self.device, progress=progress)
        return attach_thumbnails(result, token_thumbnails(info, self.device))

    # -- extractors -----------------------------------------------------------------------------------------------

    def train_extractor(self, arch: str, *, model: str | None = None, name: str | None = None, classes: ClassSpec | None = None,
                        concept: str | None = None, restart: bool = False, bundle: bool = False, precision: str | None = None,
                        progress: Progress | None = None, **recipe: Any) -> TrainedExtractor:
        """Train an information extractor f_Y on the model's own generated images and register it (resumable).

        `arch`: 'ce', 're' or 're-authors'. `classes`: a subset (`name` required). `concept`: a named concept's binary
        extractor, not-Y (0) vs Y (1), trained on its members' images and as many others' (`name` required; indexing the
        concept with it explains its log-odds, target 'binary'). `recipe`: `TrainConfig`/`ExtractorConfig` fields (epochs,
        batch_size, lr, weight_decay, step_size, gamma, train/val/test_per_class, width, fc_width, seed, data_seed).
        `precision`: 'fp32' (default) or 'bf16' (autocast; part of the run's identity). `bundle=True` (mini only) also
        writes the fp16 weights into the package, as the maintainers ship them."""
        from .extractors.training import train_from_options

        with self._home():
            return train_from_options(self.store, self._model(model), arch, name=name, classes=classes, concept=concept, restart=restart,
                                      bundle=bundle, precision=precision, device=self.device, progress=progress,
                                      dist=self._job() if in_torchrun() else None, **recipe)

    def test_extractors(self, *, model: str | None = None, per_class: int | None = None,
                        progress: Progress | None = None) -> ExtractorTests:
        """The paper's Table 1: top-1/3/5/10 accuracy of every registered extractor on generated test images."""
        from .extractors import test_extractors

        with self._home():
            info = self._model(model)
            scores = test_extractors(self.store, info, per_class=per_class, device=self.device, progress=progress)
            return ExtractorTests(info.name, "test", scores)

    # -- evaluations ----------------------------------------------------------------------------------------------

    def evaluate(self, kind: str, *, model: str | None = None, extractors: str = "all", out: str | Path | None = None,
                 judge_weights: str | Path | None = None, progress: Progress | None = None, **settings: Any):
        """Run one evaluation and store it: 'image-level' (Figure 3), 'concept-level' (Table 2), 'edit' (Table 3),
        'localization', 'stability' or 'sanity' (the maps under weight randomisation and label permutation).

        `settings`: fields of the kind's `SETTINGS` dataclass (`evaluation.registry.EVALUATIONS`, e.g. images_per_class=4,
        ns=(5, 10)); `extractors` 'all', 'ce' or 'ce,re'. JSON and a plot go to `out` (default `$CORTEX_HOME/reports/<model>/`)."""
        from .evaluation.registry import prepare_evaluation

        run = prepare_evaluation(kind, settings, judge_weights)  # checked before the store is opened
        with self._home():
            return run(self.store, self._model(model), extractors=extractors, device=self.device, out_dir=_path(out), progress=progress)

    def evaluate_all(self, out: str | Path, *, progress: Progress | None = None):
        """Every evaluation with its defaults on the mini model, in a fresh temporary store, and report.md in `out`."""
        from .evaluation.run_all import run_all

        with self._home():
            return run_all(Path(out), device=self.device, progress=progress)  # checks `out` is writable first

    def report(self, *, model: str | None = None, out: str | Path | None = None):
        """The latest stored result of each evaluation gathered into one Markdown file (nothing is recomputed)."""
        from .evaluation.report import write_report

        with self._home():
            return write_report(self.store, self._model(model), _path(out))

    # -- pictures of the index ------------------------------------------------------------------------------------

    def atlas(self, out: str | Path, *, classes: ClassSpec | None = None, model: str | None = None, extractor: str | None = None,
              method: str | None = None, run: int | None = None, k: int | None = None, crops: int | None = None,
              neighbours: int | None = None, baselines: Sequence[str] | None = None, split: str = "train", batch_size: int = 32,
              force: bool = False, progress: Progress | None = None, image_pages: bool = False):
        """The token atlas: a static website of the index in `out` (only pages whose data changed are rewritten).

        `classes` chooses the class and named concept pages (default: every indexed class and named concept; a concept
        brings its members' class pages). `image_pages`: overlays link to images/<id>.html, which `cortex serve` renders."""
        from .atlas import atlas_of

        with self._home():
            return atlas_of(self.store, self._model(model), Path(out), classes=classes, k=k, crops=crops, neighbours=neighbours,
                            baselines=baselines, split=split, image_pages=image_pages, extractor=extractor, method=method, run=run,
                            device=self.device, batch_size=batch_size, force=force, progress=progress)

    def demo(self, out: str | Path = "cortex-demo", *, concept: str = "red-capped bird", seed: int = 0,
             progress: Progress | None = None):
        """The tour on the mini model: generate, index, top tokens vs the baseline, Figure 2, an edit, a sweep, the atlas."""
        from .demo import run_demo

        with self._home():
            return run_demo(self.store, Path(out), self.device, progress=progress, concept=concept, seed=seed)

    # -- the bundled mini model -----------------------------------------------------------------------------------

    def mini_report(self, *, heldout_per_concept: int = 40, generated_per_concept: int = 16, seed: int = 0,
                    progress: Progress | None = None):
        """Quality of the bundled mini model: VQGAN PSNR, codebook use, judges' accuracy (held-out and generated)."""
        from .miniworld.mini_report import report_mini

        return report_mini(self.store, self.device, heldout_per_concept=heldout_per_concept, generated_per_concept=generated_per_concept,
                           seed=seed, progress=progress)

    def train_mini(self, out: str | Path | None = None, *, work_dir: str | Path | None = None, seed: int = 0,
                   vq_steps: int | None = None, gpt_steps: int | None = None, progress: Progress | None = None):
        """Train the mini model from nothing (VQGAN, class-conditional prior, two judges); resumes at the first unfinished stage."""
        from .miniworld.training import train_mini

        return train_mini(_path(out), work_dir=_path(work_dir), seed=seed, vq_steps=vq_steps, gpt_steps=gpt_steps, progress=progress)


def _path(out: str | Path | None) -> Path | None:
    return Path(out) if out is not None else None


__all__ = ["ExtractorTests", "RegisteredModel", "TrainedExtractor", "Workspace"]
