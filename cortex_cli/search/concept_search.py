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

A named concept (`subjects.Subject`) is searched like a class: the objective is its score
(`outcome.aim_at`, with the union score `--objective` names: 'logit' -> logsumexp of the
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
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..backends.base import to_pil
from ..core.environment import artifacts_dir, writable_dir
from ..core.errors import CortexError
from ..core.progress import Progress, report
from ..core.seeding import derive_seed, generator_for
from ..extractors.registry import get_extractor, load_extractor
from ..images.generation import class_slug
from ..images.pngmeta import read_png
from ..images.token_blobs import pack_tokens, unpack_tokens
from ..index.rankings import top_tokens
from ..judges.pixel_judges import judges_or_notice
from ..models.registry import ModelInfo, load_model
from ..models import subjects
from ..models.subjects import Subject, SubjectLike
from ..models.targets import Target
from ..store import searches as search_store
from ..store.database import Store
from .outcome import (Aim, Outcome, aim_at, check_members, encoded_picture, extractor_logits, prior_nll_pair, source_tokens,
                      strip_labels, write_pngs)
from .regions import Region, parse_region
from .token_selection import OptimizeSettings, concept_objective, optimize_tokens

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
class ConceptSearchFields:
    """A concept search's own fields; `ConceptSearchResult` ends with `outcome.Outcome`'s (what was aimed at, notices,
    the prior's NLL)."""

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


@dataclass(frozen=True)
class ConceptSearchResult(Outcome, ConceptSearchFields):
    """What `search_concept` found, stored and wrote: `ConceptSearchFields`, then `Outcome`'s fields (`prior_nll`: of
    the best grid, `prior_nll_source`: of the start grid, an image start only)."""

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


def restart_seed(model: ModelInfo, about: SubjectLike, region: Region, init: str, seed: int, restart: int,
                 target: Target = Target()) -> int:
    """The restart's seed, from the search's stable identity (never row ids or insertion order); a concept's by its target key."""
    if not target.is_class:
        return derive_seed("concept-search", model.name, target.key, str(region), init, int(seed), int(restart))
    return derive_seed("concept-search", model.name, Subject.of(about).lead.class_id, str(region), init, int(seed), int(restart))


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
    tokens = (tokens if tokens is not None else encoded_picture(png, path, model, vqgm, notices)).long().cpu()
    digest = hashlib.sha256(pack_tokens(tokens, model.n_embed)).hexdigest()[:16]
    return _Start(IMAGE, f"image:{digest}", tokens, path.resolve())


def _search_key(model: ModelInfo, extractor_info: Any, about: Subject, region: Region, start: _Start,
                settings: OptimizeSettings, target: Target = Target()) -> str:
    identity = {
        "model": model.name, "extractor": extractor_info.name, "extractor_sha256": getattr(extractor_info, "ckpt_sha256", ""),
        "class_id": about.lead.class_id, "region": str(region), "init": start.identity, "seed": int(settings.seed),
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


def _compare(store: Store, model: ModelInfo, about: Subject, extractor: str, k: int,
             t_star: list[TokenCount]) -> tuple[SaliencyComparison | None, str | None]:
    try:
        salient = top_tokens(store, model, about, extractor=extractor, k=k)
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


@dataclass
class _Search:
    """One search, checked: its aim, region, start and settings, the key its rows are stored under, and where it writes."""

    model: ModelInfo
    aim: Aim
    region: Region
    start: _Start
    settings: OptimizeSettings  # `snapshot_steps` set, `init` from the start
    key: str
    params: dict[str, Any]
    vqgm: Any
    out: Path

    def base_grid(self, restart: int) -> torch.Tensor:
        """The restart's grid outside the region (and its start inside, but for a random start)."""
        if self.start.tokens is not None:
            return self.start.tokens.clone()
        return noise_grid(self.model, self.settings.seed, restart)


def _prepare(model: ModelInfo, about: Subject, settings: OptimizeSettings, extractor_info: Any, device: torch.device | str,
             region: Region | None, init: str | Path, restarts: int, k: int, out_dir: Path | None, notices: list[str]) -> _Search:
    """Check every input and fix the search's identity (nothing is written yet)."""
    region = region if region is not None else Region((0, model.grid), (0, model.grid))
    region.check(model.grid)
    if restarts < 1:
        raise CortexError(f"--restarts must be >= 1, got {restarts}")
    if k < 1:
        raise CortexError(f"-k must be a positive number of salient tokens, got {k}")
    snapshot_steps = _snapshot_steps(int(settings.steps))
    settings = replace(settings, method="token", snapshot_steps=snapshot_steps).validate()
    check_members(about, model, "search for", "class")
    aim = aim_at(extractor_info, about, settings.objective)
    vqgm = load_model(model, device)
    start = _resolve_start(init, model, vqgm, notices)
    out = writable_dir(out_dir if out_dir is not None else artifacts_dir("concept-searches", model.name), "the concept search to")
    settings = replace(settings, init=RANDOM if start.mode == RANDOM else "source").validate()
    key = _search_key(model, extractor_info, about, region, start, settings, aim.goal)
    params = {
        **{k_: v for k_, v in asdict(settings).items() if k_ not in ("snapshot_steps", "method")},
        "snapshot_steps": list(snapshot_steps), "extractor": extractor_info.name,
        "extractor_sha256": getattr(extractor_info, "ckpt_sha256", ""), "init_path": str(start.path) if start.path else None,
        **aim.concept_params(),
    }
    return _Search(model, aim, region, start, settings, key, params, vqgm, out)


def _readout(logits: torch.Tensor, aim: Aim, objective: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(the selection objective, the extractor's P(target)) of final grids from their logits (B x outputs, on the CPU)."""
    if aim.goal.is_class:
        logp = F.log_softmax(logits, dim=-1)[:, aim.objective]
        return (logits[:, aim.objective] if objective == "logit" else logp), logp.exp()
    return concept_objective(logits, aim.goal, objective), aim.p_target(F.softmax(logits, dim=-1))


def _optimise(job: _Search, todo: list[int], restarts: int, extractor_info: Any, net: torch.nn.Module | None,
              device: torch.device | str, notices: list[str], progress: Progress | None) -> list[dict[str, Any]]:
    """Optimise the restarts `todo` and score their final grids: one new `concept_searches` row each (not stored yet)."""
    if not todo:
        return []
    model, settings, mask = job.model, job.settings, job.region.mask(job.model.grid)
    net = net if net is not None else load_extractor(extractor_info, device)
    codebook = job.vqgm.codebook.detach()
    total = len(todo) * settings.steps
    fresh: dict[int, tuple[int, torch.Tensor, list[torch.Tensor]]] = {}
    for i, r in enumerate(todo):
        seed = restart_seed(model, job.aim.subject, job.region, job.start.identity, settings.seed, r, job.aim.goal)

        def restart_progress(done: int, _steps: int, info: str = "", before: int = i * settings.steps, r: int = r) -> None:
            report(progress, before + done, total, f"restart {r + 1}/{restarts} {info}".rstrip())

        res = optimize_tokens(net, codebook, job.base_grid(r), mask, job.aim.objective, replace(settings, seed=seed), restart_progress)
        fresh[r] = (seed, res.tokens, [res.snapshots[s] for s in settings.snapshot_steps])
    grids = torch.stack([fresh[r][1] for r in todo])
    objective, p_target = _readout(extractor_logits(net, job.vqgm, grids, device).cpu(), job.aim, settings.objective)
    judge_scores = _judge_scores(job, grids, device, notices)
    return [dict(
        search_key=job.key, model_id=model.id, extractor_id=extractor_info.id, region=str(job.region), target=job.aim.goal.key,
        class_pk=job.aim.subject.lead.pk, init=job.start.identity, params=json.dumps(job.params, sort_keys=True), restart=r,
        seed=seed, tokens=pack_tokens(tokens, model.n_embed), snapshots=_pack_grids(snaps, model.n_embed),
        t_star=json.dumps([[e.token, e.positions] for e in t_star_of(tokens, mask)]),
        objective=float(objective[i]), p_target=float(p_target[i]), judges=json.dumps(judge_scores[i], sort_keys=True),
    ) for i, (r, (seed, tokens, snaps)) in enumerate((r, fresh[r]) for r in todo)]


def _judge_scores(job: _Search, grids: torch.Tensor, device, notices: list[str]) -> list[dict[str, float]]:
    """Judges' P(target) of every decoded grid (a concept: the sum of its members'); empty dicts (and a notice) when the
    model has none."""
    judges = judges_or_notice(job.model, device, notices)
    scored = job.aim.judged(judges, job.vqgm.decode_tokens(grids)) if judges else {}
    return [{name: float(p[i]) for name, (_, p) in scored.items() if p is not None} for i in range(len(grids))]


def _read_restarts(job: _Search, rows: dict[int, dict[str, Any]], fresh: set[int], restarts: int
                   ) -> tuple[list[RestartResult], dict[int, torch.Tensor], dict[int, list[torch.Tensor]]]:
    """Every requested restart from its row (stored or fresh): its scores, final grid and snapshots."""
    model, steps = job.model, job.settings.snapshot_steps
    results, grids, snaps = [], {}, {}
    for r in range(restarts):
        row = rows[r]
        grids[r] = unpack_tokens(row["tokens"], model.n_embed, model.grid)
        snaps[r] = _unpack_grids(row["snapshots"], len(steps), model.n_embed, model.grid)
        t_star = [TokenCount(int(t), int(n)) for t, n in json.loads(row["t_star"])]
        results.append(RestartResult(
            restart=r, seed=int(row["seed"]), objective=float(row["objective"]), p_target=float(row["p_target"]),
            judges=json.loads(row["judges"]), n_distinct=len(t_star), t_star=t_star, computed=r in fresh,
        ))
    return results, grids, snaps


def _write(job: _Search, best: int, final: torch.Tensor, snapshots: list[torch.Tensor]) -> tuple[Path, Path]:
    """The best restart's final PNG and its strip (the start, unless random; each snapshot; the final grid)."""
    random_start = job.start.mode == RANDOM
    tiles = ([] if random_start else [job.base_grid(best)]) + snapshots + [final]
    labels = strip_labels(job.settings.snapshot_steps, job.settings.steps, None if random_start else "start")
    images = to_pil(job.vqgm.decode_tokens(torch.stack(tiles)))
    meta = {"class_id": job.aim.class_ids[0], "class_name": job.aim.subject.name, "concept_search": job.key, "restart": best,
            "region": str(job.region), "init": job.start.identity, "step": job.settings.steps, **job.aim.concept_meta()}
    whole = job.region.size == job.model.grid * job.model.grid
    base = job.out / f"{class_slug(job.aim.subject.name)}-{job.key[:10]}-restart{best}"
    return write_pngs(base, job.model, images[-1], final, images, labels, None if whole else (job.region.rows, job.region.cols), meta)


def search_concept(
    store: Store,
    model: ModelInfo,
    about: SubjectLike,
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
    """Find the token combination that best expresses `about` under the extractor (paper §3.4).

    Everything is validated before optimising; on bad input nothing is written.

    Args:
        store: the opened database (one `concept_searches` row per restart, insert-or-skip).
        model: the registered model whose codebook is searched.
        about: the class, or named concept, whose extractor score is maximised (see the module docstring).
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
    about = Subject.of(about)
    job = _prepare(model, about, settings, extractor_info, device, region, init, restarts, k, out_dir, notices)
    stored = search_store.stored_restarts(store, job.key)
    todo = [r for r in range(restarts) if r not in stored]
    new_rows = _optimise(job, todo, restarts, extractor_info, extractor, device, notices, progress)
    results, grids, snaps = _read_restarts(job, {**stored, **{row["restart"]: row for row in new_rows}}, set(todo), restarts)
    best = max(results, key=lambda x: (x.objective, -x.restart))
    comparison, hint = _compare(store, model, about, extractor_info.name, k, best.t_star)
    if comparison is not None:
        rank = {t: i + 1 for i, t in enumerate(comparison.salient_tokens)}
        for res in results:
            for e in res.t_star:
                e.salient_rank = rank.get(e.token)
    final = grids[best.restart]
    output_path, strip_path = _write(job, best.restart, final, snaps[best.restart])  # files first (same names on every rerun)
    search_store.insert_restarts(store, new_rows)  # insert-or-skip on (search_key, restart)
    prior_nll, prior_nll_source = prior_nll_pair(job.vqgm, final, job.start.tokens, about)
    return ConceptSearchResult(
        model=model.name, extractor=extractor_info.name, class_id=about.lead.class_id, class_name=about.name, region=str(job.region),
        init=job.start.identity, init_path=job.start.path, search_key=job.key, steps=job.settings.steps,
        objective_kind=job.settings.objective, best_restart=best.restart, objective=best.objective, p_target=best.p_target,
        t_star=best.t_star, tokens=final.tolist(), restarts=results, comparison=comparison, hint=hint, output_path=output_path,
        strip_path=strip_path, computed=len(todo), reused=restarts - len(todo), params=job.params, notices=notices,
        prior_nll=prior_nll, prior_nll_source=prior_nll_source, **job.aim.outcome_fields(),
    )


def search_named(store: Store, model: ModelInfo, about: str | int | SubjectLike, *, settings: OptimizeSettings, region: str = "all",
                 init: str | Path | None = None, restarts: int | None = None, extractor: str = "ce", k: int | None = None,
                 out_dir: Path | None = None, device: torch.device | str = "cpu", progress: Progress | None = None) -> ConceptSearchResult:
    """`search_concept` as `cortex optimize` asks for it: `about` a class or concept name or id (`subjects.subject`), `region`
    a rectangle's text (`regions.parse_region`), `extractor` a registered name; None takes the defaults (init 'random',
    `DEFAULT_RESTARTS` restarts, `DEFAULT_K` tokens).

    Raises:
        CortexError: an unknown class, concept or extractor, a bad region, and whatever `search_concept` refuses.
    """
    subject = subjects.subject(store, model, about)
    parsed = parse_region(region, model.grid)
    extractor_info = get_extractor(store, model, extractor)
    return search_concept(store, model, subject, settings=settings, extractor_info=extractor_info, device=device, region=parsed,
                          init=RANDOM if init is None else init, restarts=DEFAULT_RESTARTS if restarts is None else restarts,
                          k=DEFAULT_K if k is None else k, out_dir=out_dir, progress=progress)
