"""The Python API: a `Workspace` (home, database, device) with one method per thing the CLI does.

    from cortex_cli import Workspace

    ws = Workspace(home="cortex-home")                 # the bundled mini model is always there
    ws.index("red-capped bird", images=20)             # generates the missing images first
    top = ws.top_tokens("red-capped bird", k=10, baseline="frequency")
    top.to_pandas()                                     # or top.to_dict(), or just `top` in a notebook

Inputs are plain values: class names or ids, paths, PIL images or image tensors. Results are frozen
dataclasses (`cortex_cli.core.results.Result`: `to_dict()` equals the CLI's `--json`, `to_pandas()`, an
HTML table in a notebook); pictures come back as paths to PNGs written where you asked. Errors are
`CortexError` with one line that says what to do. Long methods take `progress(done, total, info)`.
Under torchrun, `generate`, `index` and `train_extractor` deal their work to the ranks and return the
whole job's result on every rank; the process group lives as long as the workspace (`close()`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .images import generation
from .images.pictures import picture_path, token_thumbnails
from .search.token_selection import OptimizeSettings, optimize_settings
from .index import build as indexing
from .models import registry as model_registry
from .attribution import SaliencySettings, saliency_settings
from .index.audit import DEFAULT_K as DEFAULT_AUDIT_K, DEFAULT_RESAMPLES as DEFAULT_AUDIT_RESAMPLES
from .models import concepts, subjects
from .models.concepts import ConceptInfo
from .models.subjects import Subject
from .core.distributed import DistContext, in_torchrun, torchrun_job
from .core.environment import default_db_url, home_override, resolve_device
from .core.errors import CortexError
from .extractors.registry import ensure_bundled_extractors, get_extractor
from .extractors.accuracy import ExtractorTests, TrainedExtractor
from .models.registry import ClassInfo, ModelInfo, RegisteredModel
from .core.progress import Progress
from .core.results import attach_thumbnails
from .store.database import Store, check_url, open_store
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
        device: 'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'; under torchrun 'auto'/'cuda' mean
            cuda:LOCAL_RANK.

    Raises:
        CortexError: a malformed URL or an unknown or missing device (checked before anything is opened).
    """

    def __init__(self, home: str | Path | None = None, db: str | None = None, device: str = "auto") -> None:
        self.home = Path(home).expanduser() if home is not None else None
        self._db = db.strip() if db is not None else None
        if self._db is not None:
            if not self._db:
                raise CortexError("the database URL is empty; give e.g. sqlite:///cortex.db, or leave it out for the default")
            check_url(self._db)
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
                opener = self._open
                self._store = self._job().main_first(opener) if in_torchrun() else opener()
        return self._store

    def _open(self) -> Store:
        store = open_store(self._db or default_db_url())
        try:
            model_registry.ensure_bundled(store)
            ensure_bundled_extractors(store)
        except BaseException:
            store.close()
            raise
        return store

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

    def _classes(self, info: ModelInfo, spec: ClassSpec) -> list[ClassInfo]:
        """Classes by id or name, a list of them, 'all', 'a,b,c' or '@file.txt'; a concept stands for its members."""
        return subjects.classes(self.store, info, spec)

    def _target(self, info: ModelInfo, spec: str | int) -> Subject:
        """A class (id, name or synonym) or else a named concept (`subjects.subject`)."""
        return subjects.subject(self.store, info, spec)

    def _targets(self, info: ModelInfo, spec: ClassSpec) -> list[Subject]:
        """Like `_classes`, but a concept's name stays the concept (commands that explain it as a whole)."""
        return subjects.subjects(self.store, info, spec)

    # -- models and data ------------------------------------------------------------------------------------------

    def model(self, name: str | None = None) -> ModelInfo:
        """A registered model by name (default: the bundled mini model)."""
        return self._model(name)

    def subject(self, name: str | int, *, model: str | None = None) -> Subject:
        """What a name or id stands for in a model: a class (a concept of one member) or a named concept."""
        return self._target(self._model(model), name)

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
        if (gpt_ckpt is not None and ckpt is not None) or (vq_ckpt is not None and config is not None):
            raise CortexError("give --gpt-ckpt/--vq-ckpt (llamagen) or --ckpt/--config (taming), not both")
        options = {"gpt_model": gpt_model, "image_size": image_size, "downsample": downsample}
        with self._home():
            return model_registry.add_model(self.store, name, vq_ckpt if vq_ckpt is not None else config,
                                            gpt_ckpt if gpt_ckpt is not None else ckpt, labels, backend=backend, path=path,
                                            options={k: v for k, v in options.items() if v is not None})

    def concepts(self, *, model: str | None = None) -> list[ConceptInfo]:
        """The model's named concepts (unions of classes, prompts), by name."""
        return concepts.list_concepts(self.store, self._model(model))

    def add_concept(self, name: str, *, classes: ClassSpec | None = None, prompt: str | None = None,
                    model: str | None = None) -> ConceptInfo:
        """Name a concept: the union of `classes` ('a,b,c', a list, '@file.txt'), or a `prompt` (text-conditional models:
        a class sampled from the prompt verbatim). Afterwards the name works wherever a class name does."""
        info = self._model(model)
        members = None
        if classes is not None:
            if isinstance(classes, str) and not classes.strip():
                raise CortexError(f"concept {name!r} needs at least one member class; give --classes 'a,b,c'")
            if isinstance(classes, str) and classes.strip().lower() == "all":
                raise CortexError("a concept of every class explains nothing; name its member classes")
            members = []
            for item in (subjects.parse_names(classes) if isinstance(classes, str) else [classes] if isinstance(classes, int) else classes):
                hit = self._target(info, item)
                if not hit.is_class:
                    raise CortexError(f"{hit.name!r} is a concept; a concept's members are classes (name its classes instead)")
                members.append(hit.lead)
        text = prompt is not None and model_registry.text_conditional(info)
        return concepts.add_concept(self.store, info, name, classes=members, prompt=prompt, text_conditional=text)

    def remove_concept(self, name: str, *, model: str | None = None) -> ConceptInfo:
        """Forget a concept (a prompt concept's own class goes with it, with its images and index rows)."""
        return concepts.remove_concept(self.store, self._model(model), name)

    def generate(self, classes: ClassSpec, images: int, *, model: str | None = None, split: str = "train", first_seed: int = 0,
                 batch_size: int | None = None, out: str | Path | None = None, top_k: int | None = None, top_p: float | None = None,
                 temperature: float | None = None, sampler: str | None = None, precision: str | None = None,
                 cfg_scale: float | None = None, progress: Progress | None = None) -> list[generation.GenerationResult]:
        """Sample image seeds `first_seed .. +images-1` of each class into the store (and PNGs into `out`); idempotent.

        The images of all classes form one job dealt by image (`generation.generate_requests`); `batch_size`
        None takes what the device holds. `sampler` 'philox' (default) or 'host' (the older sampler of older
        stores), `precision` 'fp32' (default) or 'bf16' (philox only) select the sampler, part of each image's identity;
        `cfg_scale` is the classifier-free guidance scale of class-conditional priors that have a null class (llamagen;
        1: none; default: the model's).
        """
        with self._home():
            info = self._model(model)
            targets = self._classes(info, classes)
            out_dir = Path(out) if out is not None else None
            out_dir = generation.check_request(images, split=split, batch_size=batch_size or 1, out_dir=out_dir, seed=first_seed)
            dist = self._ranks()
            settings = None
            if any(v is not None for v in (top_k, top_p, temperature, sampler, precision, cfg_scale)):
                settings = generation.resolve_sampler(info, top_k, top_p, temperature, self.device, noise=sampler, precision=precision,
                                                      guidance=cfg_scale)
            seeds = tuple(range(first_seed, first_seed + images))
            requests = [generation.Request(cls, split, seeds) for cls in targets]
            return generation.generate_requests(self.store, info, requests, batch_size=batch_size, sampler=settings, out_dir=out_dir,
                                                device=self.device, progress=_named(progress, ", ".join(c.name for c in targets)), dist=dist)

    # -- the index and its questions --------------------------------------------------------------------------------

    def index(self, classes: ClassSpec, images: int = 100, *, model: str | None = None, extractor: str = "ce", split: str = "train",
              first_seed: int = 0, batch_size: int | None = None, score: str = DEFAULT_RULE, saliency: SaliencySettings | None = None,
              progress: Progress | None = None, **saliency_options: Any) -> list[indexing.IndexResult]:
        """Index the saliency (TSV maps and top-n tokens) of image seeds `first_seed .. +images-1` of each class.

        Missing images are generated first; images already indexed under the same run (method and its
        parameters) are skipped, so an interrupted call resumes. The saliency is `saliency` (`SaliencySettings`) or its
        fields as keywords: method, samples, alpha, ig_steps/ig_baseline (Integrated Gradients'), top_n, reduce,
        precision (default: `default_precision` of the device), seed (keys the noise), noise ('philox' on the device,
        or 'host': older stores' runs; another run). A named concept indexes
        the same seeds of each member class, explaining the concept's score `score` ('logsumexp' or
        'log-prob' of its members' logits; an extractor trained for the concept: its own score) in a run
        of that target; one result per member.
        """
        settings = saliency_settings(self.device, saliency, **saliency_options)
        with self._home():
            info = self._model(model)
            ext_info = get_extractor(self.store, info, extractor)
            return indexing.index_subjects(self.store, info, ext_info, self._targets(info, classes), settings, score=score, split=split,
                                           n_images=images, image_seed=first_seed, device=self.device, batch_size=batch_size,
                                           progress=_named(progress, "saliency"), dist=self._ranks(),
                                           generation_progress=_named(progress, "generating missing images"))

    def top_tokens(self, concept: str | int, k: int = 100, *, model: str | None = None, baseline: str | None = None,
                   images: int | None = None, extractor: str | None = None, method: str | None = None, run: int | None = None,
                   split: str = "train"):
        """T*_concept: the concept's k tokens most frequent in its images' top-n saliency sets, beside a ranking baseline.

        `baseline` 'frequency' (the paper's: most frequent tokens over all positions) or 'specific' ranks the same
        images without an extractor; `images` counts exactly seeds 0..N-1; the newest run is read unless
        `extractor`, `method` or `run` says which.
        """
        from .index.rankings import top_tokens

        info = self._model(model)
        result = top_tokens(self.store, info, self._target(info, concept), extractor=extractor, k=k, baseline=baseline, split=split,
                            images=images, run=run, method=method)
        return attach_thumbnails(result, token_thumbnails(info, self.device))

    def audit(self, neutral: str | int, groups: str | Sequence[str | int], *, split: str = "test", k: int = DEFAULT_AUDIT_K,
              model: str | None = None, extractor: str | None = None, run: int | None = None, images: int | None = None,
              seed: int = 0, bootstrap: int = DEFAULT_AUDIT_RESAMPLES, contrast: bool = True, out: str | Path | None = None,
              progress: Progress | None = None):
        """Which of two groups the stored `split` images of `neutral` lean toward (the authors' bias detection); stored.

        `groups` is 'A,B' or a list of two classes or concepts; their T* (k tokens each, read from the index as
        `top_tokens` reads it: `extractor`/`run`/`images`) less the tokens both share (and, with `contrast`, those the other
        group's images hold as often) are counted in each image. Returns
        Cliff's delta of the two count distributions and each group's share of leaning images, with bootstrap 95%
        intervals over images (`bootstrap` resamples keyed by neutral, groups, split and `seed`); JSON and a plot go
        to `out` (default `$CORTEX_HOME/reports/<model>/`).
        """
        from .index.audit import run_audit

        names = groups.split(",") if isinstance(groups, str) else list(groups)
        with self._home():
            info = self._model(model)
            return run_audit(self.store, info, neutral, names, split=split, k=k, extractor=extractor, run=run, images=images,
                             seed=seed, resamples=bootstrap, contrast=contrast, device=self.device, out_dir=Path(out) if out is not None else None,
                             progress=progress)

    def top_tokens_of(self, concepts: ClassSpec, k: int = 100, **options: Any) -> list:
        """`top_tokens` of several classes or concepts ('a,b,c', '@file.txt', 'all' or a list), one result each, in order."""
        info = self._model(options.get("model"))
        return [self.top_tokens(t.ref, k, **options) for t in self._targets(info, concepts)]

    def token(self, token: int, *, top: int = 20, images: int | None = None, extractor: str | None = None, model: str | None = None,
              split: str = "train"):
        """Which classes use a codebook token most: as a salient token (the index) and as a plain occurrence."""
        from .index.rankings import token_usage

        info = self._model(model)
        return token_usage(self.store, info, token, top=top, extractor=extractor, split=split, images=images)

    def explain(self, image: str | Path | Image.Image | torch.Tensor, *, top_n: int = 10, out: str | Path | None = None,
                extractor: str = "ce", model: str | None = None, target: str | int | None = None, score: str = DEFAULT_RULE,
                saliency: SaliencySettings | None = None, **saliency_options: Any):
        """The top-n tokens of one picture (a cortex PNG's tokens, else the VQGAN's encoding); drawn to `out` if given.

        `target`: explain this class or named concept (its score `score`) instead of the PNG's (or predicted) class. The
        saliency is `saliency` or its fields as keywords, as `index` takes them.
        """
        from .index.explain import explain_png

        settings = saliency_settings(self.device, saliency, **saliency_options)
        with self._home(), picture_path(image) as path:
            result = explain_png(self.store, path, model_name=model, extractor_name=extractor, top_n=top_n, settings=settings,
                                 device=self.device, out=Path(out) if out is not None else None, target=target, score=score)
        return attach_thumbnails(result, token_thumbnails(self._model(result.model), self.device))

    def show(self, image: int | str | Path | Image.Image | torch.Tensor, out: str | Path | None, *, top_n: int = 5,
             extractor: str | None = None, model: str | None = None, seed: int = SALIENCY.seed, target: str | int | None = None,
             score: str = DEFAULT_RULE, noise: str = SALIENCY.noise):
        """Paper Figure 2: red boxes on an image's top-n tokens, written to `out` (a stored image id uses its index map;
        `out` None: the tokens only).

        `target`: explain this class or named concept (its score `score`; read from its own runs when indexed).
        """
        from .index.explain import explain_png, show_image

        with self._home():
            if isinstance(image, int) and not isinstance(image, bool):
                info = self._model(model)
                item = self._target(info, target) if target is not None else None
                return show_image(self.store, info, image, extractor_name=extractor, top_n=top_n, out=_path(out), device=self.device,
                                  settings=SaliencySettings(seed=seed, noise=noise), target=item, score=score)
            with picture_path(image) as path:
                return explain_png(self.store, path, model_name=model, extractor_name=extractor, top_n=top_n,
                                   settings=SaliencySettings(seed=seed, noise=noise), device=self.device, out=_path(out), target=target, score=score)

    def image(self, image_id: int, *, model: str | None = None, out: str | Path | None = None):
        """A stored image: its identity, token grid and the index runs holding its map; `out` writes it as a cortex PNG."""
        from .images.stored import stored_image, write_stored_png

        info = self._model(model)
        found = stored_image(self.store, info, image_id)
        return found if out is None else write_stored_png(self.store, info, found, Path(out), self.device)

    def mask(self, image: int | str | Path | Image.Image | torch.Tensor, *, positions: Sequence[int] | None = None, top_n: int = 5,
             fill: str = "black", seed: int = 0, target: str | int | None = None, extractor: str | None = None,
             model: str | None = None, out: str | Path | None = None):
        """The judges' P(class) with some of an image's tokens masked, beside as many seeded random ones (Figure 3, one image).

        `image` is a stored image id or a picture; the masked positions are `positions` (row * m + col), else the
        image's `top_n` TSV positions (as `show` finds them, with `extractor`). `target` is the class the judges score
        (default: the image's own); `fill` 'black' (the paper's), 'mean', 'blur' or 'tokens'; `out` gets a strip.
        """
        from .images.pngmeta import read_png
        from .judges.masked import mask_picture, png_picture, stored_picture

        with self._home(), (contextlib.nullcontext(image) if _is_id(image) else picture_path(image)) as source:
            info = self._model(model if model is not None or _is_id(image) else read_png(source).model_name)
            picture = stored_picture(self.store, info, source) if _is_id(image) else png_picture(info, source, self.device)
            chosen_by = "given positions"
            if positions is None:
                ranked = self.show(source, None, top_n=top_n, extractor=extractor, model=info.name, seed=seed)
                positions, chosen_by = [t.position for t in ranked.top], f"top {top_n} TSV ({ranked.tsv_from}, {ranked.extractor})"
            scored = self._target(info, target) if target is not None else None
            if scored is not None and not scored.is_class:
                raise CortexError(f"mask scores one class; {scored.name!r} is a concept (name one of its classes)")
            return mask_picture(self.store, info, picture, list(positions), class_id=scored.class_id if scored else None, fill=fill,
                                seed=seed, chosen_by=chosen_by, device=self.device, out=_path(out))

    def show_token(self, concept: str | int, token: int, out: str | Path, *, limit: int = 12, extractor: str | None = None,
                   model: str | None = None):
        """Paper Figure 5: a concept's indexed images with one token boxed wherever it is salient, written to `out`."""
        from .index.explain import show_token

        info = self._model(model)
        with self._home():
            return show_token(self.store, info, self._target(info, concept), token, Path(out), extractor_name=extractor, limit=limit,
                              device=self.device)

    # -- optimisation ---------------------------------------------------------------------------------------------

    def edit(self, image: str | Path | Image.Image | torch.Tensor, target: str | int, region: str, *, model: str | None = None,
             extractor: str | None = None, out: str | Path | None = None, save_every: int | None = None,
             optimizer: OptimizeSettings | None = None, progress: Progress | None = None, **optimizer_options: Any):
        """Edit an image region's tokens toward a target class or named concept (paper §3.4, Figure 4); the edit is stored.

        `region` is a token rectangle 'R0:R1,C0:C1' (half-open), 'R,C' or 'all'. The optimiser is `optimizer`
        (`OptimizeSettings`) or its fields as keywords: `space` — what it moves: 'token' (Gumbel-Softmax token selection,
        the paper's) or 'embedding' (optimise E, snap to the nearest tokens: the baseline) — steps (3000), lr, tau,
        tau_final, alpha, init ('source' or 'random'), objective, seed. A concept's objective is its score
        ('logit': logsumexp of its members' logits; 'log-prob': log P(concept)).
        """
        from .images.pngmeta import read_png
        from .search.edit import edit_image
        from .search.regions import parse_region

        settings = optimize_settings(optimizer, **optimizer_options)
        if out is None and not isinstance(image, (str, Path)):
            raise CortexError("an edit of an in-memory image needs out= (a directory for the edited PNG and its strip)")
        with self._home(), picture_path(image) as path:
            info = self._model(model if model is not None else read_png(path).model_name)  # a cortex PNG names its model
            parsed = parse_region(region, info.grid)
            about = self._target(info, target)
            return edit_image(self.store, info, path, about, parsed, settings, extractor_name=extractor,
                              out_dir=Path(out) if out is not None else None, save_every=save_every, device=self.device,
                              progress=progress)

    def optimize(self, concept: str | int, *, region: str = "all", init: str | Path | None = None, restarts: int | None = None,
                 model: str | None = None, extractor: str = "ce", k: int | None = None, out: str | Path | None = None,
                 optimizer: OptimizeSettings | None = None, progress: Progress | None = None, **optimizer_options: Any):
        """The tokens that best express a class or named concept from no input (paper §3.4, eq. 7-9), beside its salient
        tokens; stored. `init` is where the search starts ('random', 'noise' or a PNG); the optimiser is `optimizer` or its
        fields as keywords (steps, lr, tau, tau_final, alpha, objective, seed), as `edit` takes them."""
        from .search import concept_search
        from .search.regions import parse_region

        settings = optimize_settings(optimizer or OptimizeSettings(steps=concept_search.DEFAULT_STEPS), **optimizer_options)
        with self._home():
            info = self._model(model)
            about = self._target(info, concept)
            parsed = parse_region(region, info.grid)
            ext_info = get_extractor(self.store, info, extractor)
            result = concept_search.search_concept(
                self.store, info, about, settings=settings, extractor_info=ext_info, device=self.device, region=parsed,
                init=concept_search.RANDOM if init is None else init,
                restarts=concept_search.DEFAULT_RESTARTS if restarts is None else restarts,
                k=concept_search.DEFAULT_K if k is None else k, out_dir=Path(out) if out is not None else None, progress=progress,
            )
        return attach_thumbnails(result, token_thumbnails(info, self.device))

    # -- extractors -----------------------------------------------------------------------------------------------

    def train_extractor(self, arch: str, *, model: str | None = None, name: str | None = None, classes: ClassSpec | None = None,
                        concept: str | None = None, restart: bool = False, bundle: bool = False, precision: str | None = None,
                        progress: Progress | None = None, **recipe: Any) -> TrainedExtractor:
        """Train an information extractor f_Y on the model's own generated images and register it (resumable).

        `arch`: 'ce', 're' or 're-authors'. `classes`: a subset (then `name` is required). `concept`: a named concept
        (`cortex concepts add`): a binary extractor, not-Y (output 0) vs Y (output 1), trained on a balanced split of
        the members' images and as many of the other classes' (`name` required; indexing the concept with it
        explains its log-odds, target 'binary'). `recipe`: the
        fields of `extractors.TrainConfig`/`ExtractorConfig` to override (epochs, batch_size, lr, weight_decay,
        step_size, gamma, train_per_class, val_per_class, test_per_class, width, fc_width, seed, data_seed).
        `precision`: 'fp32' (default) or 'bf16' (autocast around forward and loss; part of the run's identity).
        `bundle=True` (mini only) also writes the fp16 weights into the package, as the maintainers ship them.
        """
        from .extractors import default_configs, export_bundled, train_extractor
        from .extractors.training import check_run

        with self._home():
            info = self._model(model)
            if bundle and not info.is_mini:
                raise CortexError(f"--bundle ships extractors of the bundled mini model only, not of {info.name!r}; drop --bundle")
            class_ids, own = None, {}
            if classes is not None and concept is not None:
                raise CortexError("give --concept (a binary extractor for one concept) or --classes (a subset of classes), not both")
            if classes is not None:
                if not name:  # the default name ('ce') is the full extractor every command uses by default
                    raise CortexError("a subset extractor needs its own name: add --name, e.g. --name birds-ce")
                class_ids = [c.class_id for c in self._classes(info, classes)]
            if concept is not None:
                found = concepts.get_concept(self.store, info, concept)
                if not name:
                    raise CortexError(f"a concept extractor needs its own name: add --name, e.g. --name {found.name.replace(' ', '-')}-{arch}")
                own = {"concept": found.name, "concept_class_ids": found.class_ids}
            cfg, tc = default_configs(info, arch, class_ids=class_ids, precision=precision, **own, **recipe)
            dist = self._job() if in_torchrun() else None
            if dist is None or dist.is_main:
                check_run(self.store, info, cfg, tc, name=name, restart=restart)
            result = train_extractor(self.store, info, cfg, tc, name=name, device=self.device, progress=progress, restart=restart,
                                     dist=dist)
            bundled = export_bundled(result.info) if bundle and (dist is None or dist.is_main) else None
            return TrainedExtractor(info.name, result, [str(p) for p in bundled] if bundled else [])

    def test_extractors(self, *, model: str | None = None, per_class: int | None = None,
                        progress: Progress | None = None) -> ExtractorTests:
        """The paper's Table 1: top-1/3/5/10 accuracy of every registered extractor on generated test images."""
        from .extractors import test_extractors
        from .extractors.accuracy import require_extractors

        with self._home():
            info = self._model(model)
            require_extractors(self.store, info)
            scores = test_extractors(self.store, info, per_class=per_class, device=self.device, progress=progress)
            return ExtractorTests(info.name, "test", scores)

    # -- evaluations ----------------------------------------------------------------------------------------------

    def evaluate(self, kind: str, *, model: str | None = None, extractors: str = "all", out: str | Path | None = None,
                 judge_weights: str | Path | None = None, progress: Progress | None = None, **settings: Any):
        """Run one evaluation and store it: 'image-level' (Figure 3), 'concept-level' (Table 2), 'edit' (Table 3),
        'localization', 'stability' or 'sanity' (the maps under weight randomisation and label permutation).

        `settings` are the fields of the kind's settings dataclass (`SETTINGS` of its module in
        `evaluation.registry.EVALUATIONS`, e.g. images_per_class=4, ns=(5, 10)); `extractors` 'all', 'ce' or 'ce,re'.
        Writes JSON and a plot to `out` (default `$CORTEX_HOME/reports/<model>/`).
        """
        from .evaluation.registry import evaluation_named

        evaluation = evaluation_named(kind)
        try:
            chosen = evaluation.SETTINGS(**settings)
        except TypeError as exc:
            known = ", ".join(f.name for f in fields(evaluation.SETTINGS))
            raise CortexError(f"{kind} evaluation: {exc}; its settings are {known}") from None
        options = {"judge_weights": judge_weights} if evaluation.USES_JUDGES else {}
        if judge_weights is not None and not evaluation.USES_JUDGES:
            raise CortexError(f"the {kind} evaluation uses no judges; drop judge_weights")
        with self._home():
            info = self._model(model)
            return evaluation.run(self.store, info, extractors=extractors, settings=chosen, device=self.device,
                                  out_dir=Path(out) if out is not None else None, progress=progress, **options)

    def evaluate_all(self, out: str | Path, *, progress: Progress | None = None):
        """Every evaluation with its defaults on the mini model, in a fresh temporary store, and report.md in `out`."""
        from .core.environment import writable_dir
        from .evaluation.run_all import run_all

        with self._home():
            writable_dir(out, "to")
            return run_all(Path(out), device=self.device, progress=progress)

    def report(self, *, model: str | None = None, out: str | Path | None = None):
        """The latest stored result of each evaluation gathered into one Markdown file (nothing is recomputed)."""
        from .evaluation.report import write_report

        with self._home():
            return write_report(self.store, self._model(model), Path(out) if out is not None else None)

    # -- pictures of the index ------------------------------------------------------------------------------------

    def atlas(self, out: str | Path, *, classes: ClassSpec | None = None, model: str | None = None, extractor: str | None = None,
              method: str | None = None, run: int | None = None, k: int | None = None, crops: int | None = None,
              neighbours: int | None = None, baselines: Sequence[str] | None = None, split: str = "train", batch_size: int = 32,
              force: bool = False, progress: Progress | None = None, image_pages: bool = False):
        """The token atlas: a static website of the index in `out` (only pages whose data changed are rewritten).

        `classes` chooses the class pages (default: every indexed class) and, by naming them, the named concepts' pages
        (default: every named concept of the model; a concept also brings its members' class pages). `image_pages`: the
        Figure-2 overlays link to images/<id>.html, the pages `cortex serve` renders.
        """
        from .atlas import PageSettings, build_atlas

        defaults = PageSettings()
        settings = PageSettings(top_k=defaults.top_k if k is None else k, crops=defaults.crops if crops is None else crops,
                                baselines=defaults.baselines if baselines is None else tuple(baselines), split=split,
                                neighbours=defaults.neighbours if neighbours is None else neighbours, image_pages=image_pages)
        with self._home():
            info = self._model(model)
            chosen = named = None
            if classes is not None and not (isinstance(classes, str) and classes.strip().lower() == "all"):
                items = self._targets(info, classes)  # a concept: its page and its members' class pages
                named = [t.concept for t in items if not t.is_class]
                chosen = subjects.member_classes(items)
            return build_atlas(self.store, info, Path(out), classes=chosen, extractor=extractor, method=method, run=run,
                               settings=settings, device=self.device, batch_size=batch_size, force=force, progress=progress,
                               named=named)

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
        from .images.generation import default_sampler
        from .judges.pixel_judges import mini_judges
        from .miniworld.mini_report import mini_report

        vqgm = model_registry.load_model(self._model(model_registry.MINI_NAME), self.device)
        return mini_report(vqgm, mini_judges(self.device), heldout_per_concept=heldout_per_concept,
                           generated_per_concept=generated_per_concept, sampler=default_sampler(vqgm), seed=seed, progress=progress)

    def train_mini(self, out: str | Path | None = None, *, work_dir: str | Path | None = None, seed: int = 0,
                   vq_steps: int | None = None, gpt_steps: int | None = None, progress: Progress | None = None):
        """Train the mini model from nothing (VQGAN, class-conditional prior, two judges); resumes at the first unfinished stage."""
        from .miniworld.training import MiniRecipe, build_mini

        recipe = MiniRecipe(seed=seed)
        if vq_steps:
            recipe.vq_steps = vq_steps
        if gpt_steps:
            recipe.gpt_steps = gpt_steps
        out_dir = Path(out) if out is not None else model_registry.BUNDLED_DIR / model_registry.MINI_NAME
        return build_mini(out_dir, recipe, work_dir=Path(work_dir) if work_dir is not None else None,
                          progress=(lambda stage: _named(progress, stage)) if progress is not None else None)


def _path(out: str | Path | None) -> Path | None:
    return Path(out) if out is not None else None


def _is_id(image: Any) -> bool:
    return isinstance(image, int) and not isinstance(image, bool)


def _named(progress: Progress | None, name: str) -> Progress | None:
    """`progress` with `name` leading its note: one callback for a call that works through several classes or stages."""
    if progress is None:
        return None

    def update(done: int, total: int, info: str = "") -> None:
        progress(done, total, info=f"{name}: {info}" if info else name)

    return update


__all__ = ["ExtractorTests", "RegisteredModel", "TrainedExtractor", "Workspace"]
