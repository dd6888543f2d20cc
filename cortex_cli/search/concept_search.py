"""Input-independent token search for a concept (paper §3.4, eq. 7-9): `cortex optimize`.

Flow: a start grid -> R restarts of `token_selection.optimize_tokens` over the region, each seeded by the
search's identity -> score every restart's final grid (the eq. 9 readout) with the extractor (and
the judges, for the report only) -> keep the restart with the best final extractor objective ->
T*_concept = its region's distinct tokens by how many positions hold them -> compare with the
saliency T*_concept of the class (§3.3, `queries.top_tokens`) -> PNG + strip, one row per restart.

Starts (`init`):
- 'random': the region's rows of P start from near-uniform seeded logits (the paper's "random
  noise" input); positions outside the region hold the restart's noise grid.
- 'noise': the start is a noise grid, every position's token drawn uniformly from the codebook,
  and the region's rows of P start at those tokens (as `cortex edit` starts at its source). The
  grid depends on (model, seed, restart) only, so every class and region starts from the same noise.
- a PNG: the image's tokens (cortex metadata; a plain picture is VQGAN-encoded); the region starts
  at them and everything outside keeps them.

Reruns are free: rows are keyed by (search identity, restart) and inserted or skipped; restarts
already stored are read back, only missing ones are optimised, and the same files are rewritten.

A named concept (`concepts.ConceptInfo`) is searched like a class: the objective is its score
(`concepts.index_target` with the union score `--objective` names: 'logit' -> logsumexp of the
members' logits, 'log-prob' -> log P(concept)); P(target) (extractor and judges) is the sum of its
members' probabilities; T*_concept is compared with the concept's own saliency run. Its rows keep
the first member's class in `class_pk` and the target key in `target`; the key and the restart
seeds include the target, so a concept search never meets a class search. A class search's
identity, seeds and rows are what they were before concepts.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..backends.base import from_pil, to_pil
from ..models.concepts import ConceptInfo
from .edit import edit_goal, source_tokens, target_probabilities
from ..core.errors import CortexError
from ..core.results import Result
from ..extractors.architectures import logits_of
from ..extractors.registry import load_extractor
from ..images.figures import edit_strip
from ..images.generation import class_slug
from ..judges.pixel_judges import judge_probabilities, judges_or_notice, target_probability
from ..models.targets import CLASS, Target
from .token_selection import OptimizeSettings, concept_objective, optimize_tokens
from ..images.pngmeta import read_png, save_png
from ..core.progress import Progress, report
from .realism import prior_nll_or_none
from ..index.rankings import top_tokens
from .regions import Region
from ..models.registry import ClassInfo, ModelInfo, load_model
from ..core.seeding import derive_seed, generator_for
from ..core.environment import artifacts_dir, writable_dir
from ..store import searches as search_store
from ..store.database import Store
from ..images.token_blobs import pack_tokens, unpack_tokens

RANDOM, NOISE, IMAGE = "random", "noise", "image"
DEFAULT_STEPS = 300  # the bundled CE saturates (P(target) > 0.999) in about 200 steps from random logits
DEFAULT_RESTARTS = 3
DEFAULT_K = 20  # salient tokens compared against
SNAPSHOT_FRACTIONS = (0.25, 0.5, 0.75)  # strip tiles besides step 1 and the final grid


@dataclass
class TokenCount:
    """One token of T*_concept (eq. 9): how many of the region's positions hold it."""

    token: int
    positions: int
    salient_rank: int | None = None  # its rank in the class's saliency top-k (None: not there / not indexed)


@dataclass
class RestartResult:
    """One independent optimisation, scored at its final step."""

    restart: int
    seed: int
    objective: float  # extractor's target logit (or log-prob; a concept: its score or log P) of the final grid: the selection score
    p_target: float  # extractor's softmax P(target) of the final grid (a concept: its members' sum)
    judges: dict[str, float]  # judge -> P(target) of the decoded final grid (reported, never used to choose)
    n_distinct: int  # distinct tokens in the region
    t_star: list[TokenCount]
    computed: bool  # False: read back from the database


@dataclass
class SaliencyComparison:
    """The optimised T*_concept beside the saliency T*_concept (§3.3) of the same class or concept."""

    extractor: str
    run_id: int
    images_indexed: int
    k: int
    salient_tokens: list[int]  # the class's top-k salient tokens, by rank
    overlap: int  # tokens in both top-k lists (optimised ranked by positions)
    overlap_tokens: list[int]
    chance_overlap: float  # expected overlap of a random top-k from the codebook
    optimised_in_salient: int  # distinct optimised tokens among the salient top-k
    n_optimised: int  # distinct optimised tokens
    positions_in_salient: float  # fraction of the region's positions holding a salient top-k token


@dataclass(frozen=True)
class ConceptSearchResult(Result):
    """What `search_concept` found, stored and wrote."""

    model: str
    extractor: str
    class_id: int  # a concept: its first member's class id
    class_name: str  # the class's or the concept's name
    region: str
    init: str  # 'random', 'noise' or 'image:<hex>'
    init_path: Path | None
    search_key: str
    steps: int
    objective_kind: str  # 'logit' or 'log-prob'
    best_restart: int
    objective: float
    p_target: float
    t_star: list[TokenCount]  # of the best restart
    tokens: list[list[int]]  # the best restart's final grid
    restarts: list[RestartResult]
    comparison: SaliencyComparison | None
    hint: str | None  # why `comparison` is None, and what to run
    output_path: Path
    strip_path: Path
    computed: int  # restarts optimised by this call
    reused: int  # restarts read back from the database
    params: dict = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    target: str = CLASS  # what was maximised: 'class', or a concept's target key (`targets.Target.key`)
    concept: str | None = None  # the concept's name when the target is a concept
    target_classes: list[int] = field(default_factory=list)  # the class, or the concept's members
    # per-token NLL under the model's prior of the best grid / of the start grid (an image start only), conditioned on
    # the target class (a concept: its first member's); None when the backend has no `prior_nll` (`realism.py`)
    prior_nll: float | None = None
    prior_nll_source: float | None = None

    def table_rows(self) -> list[dict[str, Any]]:
        """T*_concept of the best restart: one row per token, with the positions that hold it."""
        return [asdict(t) for t in self.t_star]

@dataclass
class _Start:
    mode: str  # RANDOM, NOISE or IMAGE
    identity: str
    tokens: torch.Tensor | None = None  # the image's grid
    path: Path | None = None


def noise_grid(model: ModelInfo, seed: int, restart: int) -> torch.Tensor:
    """The restart's uniformly random token grid (m x m), the same for every class and region."""
    gen = generator_for("concept-search-noise", model.name, int(seed), int(restart))
    return torch.randint(0, model.n_embed, (model.grid, model.grid), generator=gen)


def restart_seed(model: ModelInfo, cls: ClassInfo | ConceptInfo, region: Region, init: str, seed: int, restart: int,
                 target: Target = Target()) -> int:
    """The restart's seed, from the search's stable identity (never row ids or insertion order); a concept's by its target key."""
    if not target.is_class:
        return derive_seed("concept-search", model.name, target.key, str(region), init, int(seed), int(restart))
    return derive_seed("concept-search", model.name, _first_class_id(cls), str(region), init, int(seed), int(restart))


def _first_class_id(cls: ClassInfo | ConceptInfo) -> int:
    return cls.class_ids[0] if isinstance(cls, ConceptInfo) else cls.class_id


def t_star_of(tokens: torch.Tensor, mask: torch.Tensor) -> list[TokenCount]:
    """Eq. 9's set: the distinct tokens of the masked positions, by positions held, ties by token id."""
    counts = Counter(tokens.reshape(-1)[mask.reshape(-1).bool()].tolist())
    return [TokenCount(int(t), int(n)) for t, n in sorted(counts.items(), key=lambda tn: (-tn[1], tn[0]))]


def _resolve_start(init: str | Path, model: ModelInfo, vqgm, notices: list[str]) -> _Start:
    text = str(init).strip()
    if text.lower() in (RANDOM, NOISE):
        return _Start(text.lower(), text.lower())
    path = Path(text).expanduser()
    if not path.is_file():
        raise CortexError(f"--init {text!r} is neither random, noise nor an existing image; give random, noise or a PNG written by `cortex generate`")
    png = read_png(path)
    tokens = source_tokens(png, model, path, notices)
    if tokens is None:
        tokens = vqgm.encode_images(from_pil([png.image], model.image_size))[0].cpu()
        notices.append(f"{path.name} carries no cortex tokens; encoded it with the VQGAN at {model.image_size}x{model.image_size} px (centre-cropped and resized)")
    tokens = tokens.long().cpu()
    digest = hashlib.sha256(pack_tokens(tokens, model.n_embed)).hexdigest()[:16]
    return _Start(IMAGE, f"image:{digest}", tokens, path.resolve())


def _search_key(model: ModelInfo, extractor_info: Any, cls: ClassInfo | ConceptInfo, region: Region, start: _Start,
                settings: OptimizeSettings, target: Target = Target()) -> str:
    identity = {
        "model": model.name, "extractor": extractor_info.name, "extractor_sha256": getattr(extractor_info, "ckpt_sha256", ""),
        "class_id": _first_class_id(cls), "region": str(region), "init": start.identity, "seed": int(settings.seed),
        "settings": {k: getattr(settings, k) for k in ("steps", "lr", "tau", "tau_final", "alpha", "objective")},
    }
    if not target.is_class:  # a class search's identity is what it was before concepts (its stored rows stay reused)
        identity["target"] = target.key
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _snapshot_steps(steps: int) -> tuple[int, ...]:
    wanted = {1, *(round(steps * f) for f in SNAPSHOT_FRACTIONS)}
    return tuple(sorted(s for s in wanted if 1 <= s < steps))


def _pack_grids(grids: list[torch.Tensor], n_embed: int) -> bytes:
    return pack_tokens(torch.stack(grids), n_embed) if grids else b""


def _unpack_grids(blob: bytes, count: int, n_embed: int, grid: int) -> list[torch.Tensor]:
    if count == 0:
        return []
    size = len(blob) // count
    return [unpack_tokens(blob[i * size:(i + 1) * size], n_embed, grid) for i in range(count)]


def _compare(store: Store, model: ModelInfo, cls: ClassInfo | ConceptInfo, extractor: str, k: int, t_star: list[TokenCount]) -> tuple[SaliencyComparison | None, str | None]:
    try:
        salient = top_tokens(store, model, cls, extractor=extractor, k=k)
    except CortexError as exc:  # not indexed (by this extractor) yet: report, do not fail
        return None, str(exc)
    ranked = [r.token for r in salient.rows]
    rank = {t: i + 1 for i, t in enumerate(ranked)}
    top_opt = [e.token for e in t_star[:k]]
    both = [t for t in ranked if t in set(top_opt)]
    in_salient = [e for e in t_star if e.token in rank]
    positions = sum(e.positions for e in t_star)
    return SaliencyComparison(
        extractor=salient.extractor, run_id=salient.run_id, images_indexed=salient.images_indexed, k=k,
        salient_tokens=ranked, overlap=len(both), overlap_tokens=both,
        chance_overlap=len(top_opt) * len(ranked) / model.n_embed,
        optimised_in_salient=len(in_salient), n_optimised=len(t_star),
        positions_in_salient=sum(e.positions for e in in_salient) / positions if positions else 0.0,
    ), None


def search_concept(
    store: Store,
    model: ModelInfo,
    cls: ClassInfo | ConceptInfo,
    *,
    settings: OptimizeSettings,
    extractor_info: Any,
    device: torch.device | str = "cpu",
    region: Region | None = None,
    init: str | Path = RANDOM,
    restarts: int = DEFAULT_RESTARTS,
    k: int = DEFAULT_K,
    out_dir: Path | None = None,
    extractor: torch.nn.Module | None = None,
    progress: Progress | None = None,
) -> ConceptSearchResult:
    """Find the token combination that best expresses `cls` under the extractor (paper §3.4).

    Everything is validated before optimising; on bad input nothing is written.

    Args:
        store: the opened database (one `concept_searches` row per restart, insert-or-skip).
        model: the registered model whose codebook is searched.
        cls: the class, or named concept, whose extractor score is maximised (see the module docstring).
        settings: optimiser settings; `seed` is this search's seed (restart seeds derive from it and
            the search's identity), `init`/`method`/`snapshot_steps` are set here.
        extractor_info: the registered extractor (`extractors.registry.ExtractorInfo`).
        device: torch device for the model, extractor and judges.
        region: token rectangle that may change (default: the whole grid).
        init: 'random', 'noise' or the path of a PNG (see the module docstring).
        restarts: independent optimisations; the best final extractor objective wins.
        k: how many of the class's salient tokens to compare with.
        out_dir: where to write the PNG and strip (default: $CORTEX_HOME/concept-searches/<model>).
        extractor: the extractor's network, if already loaded (default: loaded from `extractor_info`).
        progress: called as progress(done, total, info) over the optimisation steps of all restarts.

    Returns:
        ConceptSearchResult: every restart's scores and T*, the chosen restart's grid and T*_concept,
        the comparison with the saliency T*_concept (None, with a hint, when the class is not
        indexed), and the written paths.

    Raises:
        CortexError: bad settings, region, init image, restarts or k; unwritable out_dir; a class
        outside the extractor's classes.
    """
    notices: list[str] = []
    region = region if region is not None else Region((0, model.grid), (0, model.grid))
    region.check(model.grid)
    if restarts < 1:
        raise CortexError(f"--restarts must be >= 1, got {restarts}")
    if k < 1:
        raise CortexError(f"-k must be a positive number of salient tokens, got {k}")
    snapshot_steps = _snapshot_steps(int(settings.steps))
    settings = replace(settings, method="token", snapshot_steps=snapshot_steps).validate()
    target_ids = cls.class_ids if isinstance(cls, ConceptInfo) else [cls.class_id]
    if not target_ids:
        raise CortexError(f"concept {cls.name!r} has no member class to search for")
    for class_id in target_ids:
        if not 0 <= class_id < max(model.n_classes, 1):
            raise CortexError(f"class {class_id} is outside model {model.name!r}'s classes")
    goal, objective_target = edit_goal(extractor_info, cls, settings.objective)
    vqgm = load_model(model, device)
    start = _resolve_start(init, model, vqgm, notices)
    out = writable_dir(out_dir if out_dir is not None else artifacts_dir("concept-searches", model.name), "the concept search to")
    settings = replace(settings, init=RANDOM if start.mode == RANDOM else "source").validate()
    key = _search_key(model, extractor_info, cls, region, start, settings, goal)
    mask = region.mask(model.grid)
    params = {
        **{k_: v for k_, v in asdict(settings).items() if k_ not in ("snapshot_steps", "method")},
        "snapshot_steps": list(snapshot_steps), "extractor": extractor_info.name,
        "extractor_sha256": getattr(extractor_info, "ckpt_sha256", ""), "init_path": str(start.path) if start.path else None,
    }
    if isinstance(cls, ConceptInfo):
        params["concept"] = cls.name

    def base_grid(restart: int) -> torch.Tensor:
        return start.tokens.clone() if start.tokens is not None else noise_grid(model, settings.seed, restart)

    # -- optimise the restarts the database does not hold yet -----------------------------
    stored = search_store.stored_restarts(store, key)
    todo = [r for r in range(restarts) if r not in stored]
    fresh: dict[int, tuple[int, torch.Tensor, list[torch.Tensor]]] = {}
    if todo:
        net = extractor if extractor is not None else load_extractor(extractor_info, device)
        codebook = vqgm.codebook.detach()
        total = len(todo) * settings.steps
        for i, r in enumerate(todo):
            seed = restart_seed(model, cls, region, start.identity, settings.seed, r, goal)

            def restart_progress(done: int, _steps: int, info: str = "", before: int = i * settings.steps, r: int = r) -> None:
                report(progress, before + done, total, f"restart {r + 1}/{restarts} {info}".rstrip())

            res = optimize_tokens(net, codebook, base_grid(r), mask, objective_target, replace(settings, seed=seed), restart_progress)
            fresh[r] = (seed, res.tokens, [res.snapshots[s] for s in snapshot_steps])
        grids = torch.stack([fresh[r][1] for r in todo])
        with torch.no_grad():
            out_logits = logits_of(net(vqgm.embed(grids.to(device)))).float().cpu()
        if goal.is_class:
            logp = F.log_softmax(out_logits, dim=-1)[:, objective_target]
            objective = out_logits[:, objective_target] if settings.objective == "logit" else logp
            p_target = logp.exp()
        else:
            objective = concept_objective(out_logits, goal, settings.objective)
            p_target = target_probabilities(F.softmax(out_logits, dim=-1), cls, goal)
        judge_scores = _judge_scores(model, vqgm, grids, target_ids, device, notices)
        new_rows = []
        for i, r in enumerate(todo):
            seed, tokens, snaps = fresh[r]
            new_rows.append(dict(
                search_key=key, model_id=model.id, extractor_id=extractor_info.id, region=str(region), target=goal.key,
                class_pk=cls.class_pks[0] if isinstance(cls, ConceptInfo) else cls.pk,
                init=start.identity, params=json.dumps(params, sort_keys=True), restart=r, seed=seed,
                tokens=pack_tokens(tokens, model.n_embed), snapshots=_pack_grids(snaps, model.n_embed),
                t_star=json.dumps([[e.token, e.positions] for e in t_star_of(tokens, mask)]),
                objective=float(objective[i]), p_target=float(p_target[i]), judges=json.dumps(judge_scores[i], sort_keys=True),
            ))
    else:
        new_rows = []

    # -- every requested restart, stored or fresh -------------------------------------------
    results: list[RestartResult] = []
    grids_by_restart: dict[int, torch.Tensor] = {}
    snaps_by_restart: dict[int, list[torch.Tensor]] = {}
    fresh_rows = {row["restart"]: row for row in new_rows}
    for r in range(restarts):
        row = fresh_rows.get(r) or stored[r]
        tokens = unpack_tokens(row["tokens"], model.n_embed, model.grid)
        grids_by_restart[r] = tokens
        snaps_by_restart[r] = _unpack_grids(row["snapshots"], len(snapshot_steps), model.n_embed, model.grid)
        t_star = [TokenCount(int(t), int(n)) for t, n in json.loads(row["t_star"])]
        results.append(RestartResult(
            restart=r, seed=int(row["seed"]), objective=float(row["objective"]), p_target=float(row["p_target"]),
            judges=json.loads(row["judges"]), n_distinct=len(t_star), t_star=t_star, computed=r in fresh_rows,
        ))
    best = max(results, key=lambda x: (x.objective, -x.restart))
    comparison, hint = _compare(store, model, cls, extractor_info.name, k, best.t_star)
    if comparison is not None:
        rank = {t: i + 1 for i, t in enumerate(comparison.salient_tokens)}
        for res in results:
            for e in res.t_star:
                e.salient_rank = rank.get(e.token)

    # -- write: files first (same names on every rerun), then the rows ----------------------
    stem = out / f"{class_slug(cls.name)}-{key[:10]}-restart{best.restart}"
    output_path, strip_path = Path(f"{stem}.png"), Path(f"{stem}-strip.png")
    final = grids_by_restart[best.restart]
    tiles, labels = [], []
    if start.mode != RANDOM:
        tiles.append(base_grid(best.restart))
        labels.append("start")
    tiles += snaps_by_restart[best.restart] + [final]
    labels += [f"step {s}" for s in snapshot_steps] + [f"final ({settings.steps})"]
    images = to_pil(vqgm.decode_tokens(torch.stack(tiles)))
    meta = {"class_id": target_ids[0], "class_name": cls.name, "concept_search": key, "restart": best.restart,
            "region": str(region), "init": start.identity, "step": settings.steps}
    if isinstance(cls, ConceptInfo):
        meta.update(concept=cls.name, target=goal.key)
    save_png(images[-1], output_path, final, model.name, meta, n_embed=model.n_embed)
    whole = region.size == model.grid * model.grid
    save_png(edit_strip(images, labels, None if whole else (region.rows, region.cols), model.grid), strip_path, None, model.name, meta)
    search_store.insert_restarts(store, new_rows)  # insert-or-skip on (search_key, restart)
    scored = [final] + ([base_grid(best.restart)] if start.tokens is not None else [])
    target_class = cls.members[0] if isinstance(cls, ConceptInfo) else cls  # a concept: its first member
    realism = prior_nll_or_none(vqgm, torch.stack(scored), [target_class] * len(scored))
    prior_nll = realism[0] if realism else None
    prior_nll_source = realism[1] if realism and len(realism) > 1 else None

    return ConceptSearchResult(
        model=model.name, extractor=extractor_info.name, class_id=target_ids[0], class_name=cls.name, region=str(region),
        init=start.identity, init_path=start.path, search_key=key, steps=settings.steps, objective_kind=settings.objective,
        best_restart=best.restart, objective=best.objective, p_target=best.p_target, t_star=best.t_star,
        tokens=final.tolist(), restarts=results, comparison=comparison, hint=hint, output_path=output_path,
        strip_path=strip_path, computed=len(fresh), reused=restarts - len(fresh), params=params, notices=notices,
        target=goal.key, concept=cls.name if isinstance(cls, ConceptInfo) else None, target_classes=list(target_ids),
        prior_nll=prior_nll, prior_nll_source=prior_nll_source,
    )



def _judge_scores(model: ModelInfo, vqgm, grids: torch.Tensor, target_ids: list[int], device, notices: list[str]) -> list[dict[str, float]]:
    """Judges' P(target) of every decoded grid (a concept: the sum of its members'); empty dicts (and a notice) when the
    model has none."""
    judges = judges_or_notice(model, device, notices)
    probs = judge_probabilities(judges, vqgm.decode_tokens(grids)) if judges else {}
    scored = {name: target_probability(p, target_ids) for name, p in probs.items()}
    return [{name: float(p[i]) for name, p in scored.items() if p is not None} for i in range(len(grids))]
