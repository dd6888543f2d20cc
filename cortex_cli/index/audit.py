"""`cortex audit NEUTRAL --groups A,B`: which group a neutral concept's images lean toward (the authors' bias detection).

The authors' released code (`Dalle_explanation/bias_detection.py`) takes each group prompt's top tokens,
counts per image of the *neutral* prompt how many positions hold them, and compares the two count
distributions with Cliff's delta. This module does the same, reproducibly:

- The groups' tokens are T* of each group (`rankings.top_tokens`, k tokens) read from the index, from the
  `groups_split` images (default 'train', as `top-tokens` reads them); `extractor`/`run`/`images` choose the
  run and the counted seeds as `top-tokens` does. A token in both groups' T* leans neither way: it is dropped
  from both (`shared_tokens`). With `contrast` (the default) so is a T* token that the other group's own T* images
  hold at least as often per image (`common_tokens`): a frequent background token salient for one group only
  adds the same positions to both kinds of image, and whichever list holds more such tokens wins most images
  (measured in docs/audit.md); `contrast=False` is the authors' rule. A group left with no token is refused.
- The audited images are every stored image of NEUTRAL (a class, or each member of a concept) of `split`
  (default 'test'), in identity order (class id, sampler, seed). An image the groups' T* counted (same split and
  same image) is never audited: it is left out and counted in `excluded`.
- Per image: the positions holding each group's tokens. Its lean is the group with more of them; equal counts
  lean neither way, so the two shares need not sum to 1 (`ties` is the rest).
- Cliff's delta = P(a > b) - P(a < b) over all pairs of the two count distributions (a: group A's counts,
  b: group B's), in [-1, 1]. Positive: the neutral images hold more of A's tokens. The authors' loop counts ties
  as 1/2 and returns (sum - N/2) / N, which is half of this number (their values lie in [-0.5, 0.5]).
- 95% intervals: percentile bootstrap over audited images (an image is resampled with both its counts), one set of
  resamples for the delta and both shares, drawn from `seeding.derive_seed` of the model, neutral, groups, split
  and `seed`: the same inputs give the same interval in any database.
- Judges (where the model has them: the mini model, ImageNet-labelled models): each image's judge call is the
  group whose member classes get more judge probability; `judges` reports per judge the share of leaning images
  whose lean agrees with that call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from ..models import registry as model_registry
from ..models.classnames import normalize_name
from ..models.subjects import Subject, subject
from ..core.errors import CortexError
from ..evaluation import common, plots
from ..evaluation.common import EvaluationResult
from ..evaluation.tables import TableSpec, num, signed
from ..images.generation import image_tokens
from ..judges.pixel_judges import judge_probabilities, judges_or_notice, target_probability
from ..models.registry import ClassInfo, ModelInfo
from ..core.progress import Progress, report
from .rankings import pick_run, run_images, token_counts_of, top_tokens
from ..core.seeding import derive_seed
from ..store import images as image_store
from ..store.database import Store

KIND = "audit"
DEFAULT_K = 5  # the authors' bias_detection.py counts 10 (token_num=10); docs/audit.md shows why fewer hold up better
DEFAULT_RESAMPLES = 2000
LEVEL = 0.95


@dataclass
class AuditGroup:
    """One group of an audit: its tokens (T* less the shared ones) and the share of audited images leaning to it."""

    name: str
    tokens: list[int]  # T* of the group, tokens in both groups' T* dropped
    share: float  # share of audited images holding more of its tokens than of the other group's
    share_ci: list[float] | None  # 95% bootstrap interval [low, high]; None with fewer than 2 images
    mean_count: float  # mean positions per audited image holding its tokens
    members: list[str]  # its classes (one for a class)
    run_id: int  # the saliency run its T* was read from
    extractor: str
    t_split: str  # the split of the images its T* counted
    t_images: int  # how many images its T* counted
    t_seeds: str  # their seeds, as ranges


@dataclass
class AuditImage:
    """One audited image by identity (never its row id): its two counts and its lean (a group's name, or '')."""

    class_name: str
    seed: int
    sampler: str
    counts: list[int]  # positions holding group A's tokens, group B's
    lean: str


@dataclass
class JudgeAgreement:
    """How often an image's lean agrees with one judge's call (the group whose classes it gives more probability)."""

    agreement: float | None  # share of the compared images; None when no image leans
    compared: int  # audited images that lean to a group (ties are not compared)
    judge_share: list[float]  # share of all audited images the judge calls for group A, group B


@dataclass(frozen=True)
class AuditResult(EvaluationResult):
    """`cortex audit`: the neutral concept's lean toward each of two groups, with bootstrap intervals."""

    KIND: ClassVar[str] = KIND
    model: str
    neutral: str
    neutral_members: list[str]
    split: str
    images: int  # audited images
    groups: list[AuditGroup]
    cliff_delta: float  # P(a > b) - P(a < b), a: group A's counts, b: group B's
    cliff_delta_ci: list[float] | None
    ties: float  # share of images leaning to neither group
    excluded: int  # neutral images of the split left out because a group's T* counted them
    shared_tokens: list[int]  # tokens in both groups' T*, counted for neither
    common_tokens: list[int]  # (contrast) T* tokens the other group's images hold as often, counted for neither
    contrast: bool
    k: int
    resamples: int
    level: float
    seed: int
    per_image: list[AuditImage] = field(default_factory=list)
    judges: dict[str, JudgeAgreement] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)
    json_path: str = ""
    plot_path: str = ""
    evaluation_id: int = 0


# -- statistics ----------------------------------------------------------------------------------------------------

def cliff_delta(a: Sequence[float], b: Sequence[float]) -> float:
    """P(a > b) - P(a < b) over all pairs (x from a, y from b); 0 when either is empty."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.size == 0 or y.size == 0:
        return 0.0
    ys = np.sort(y)
    below = np.searchsorted(ys, x, side="left")  # y < x
    above = ys.size - np.searchsorted(ys, x, side="right")  # y > x
    return float((below.sum() - above.sum()) / (x.size * ys.size))


def _deltas(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cliff's delta of each row pair of two (R, n) non-negative integer arrays, by histograms (R x (max+1) work)."""
    rows, n = a.shape
    width = int(max(a.max(initial=0), b.max(initial=0))) + 1
    offset = (np.arange(rows) * width)[:, None]
    ha = np.bincount((a + offset).ravel(), minlength=rows * width).reshape(rows, width)
    hb = np.bincount((b + offset).ravel(), minlength=rows * width).reshape(rows, width)
    cb = np.cumsum(hb, axis=1)
    below = np.concatenate([np.zeros((rows, 1), dtype=cb.dtype), cb[:, :-1]], axis=1)  # b < v
    above = n - cb  # b > v
    return ((ha * below).sum(axis=1) - (ha * above).sum(axis=1)) / float(n * n)


@dataclass(frozen=True)
class AuditStatistics:
    """Cliff's delta and both shares of two paired count vectors, with percentile bootstrap intervals."""

    cliff_delta: float
    cliff_delta_ci: list[float] | None
    shares: list[float]  # images with a > b, with b > a
    share_cis: list[list[float] | None]
    ties: float


def audit_statistics(a: Sequence[int], b: Sequence[int], *, seed: int, resamples: int = DEFAULT_RESAMPLES,
                     level: float = LEVEL) -> AuditStatistics:
    """Statistics of per-image counts `a` (group A) and `b` (group B): resampling images (both counts together).

    Raises:
        CortexError: unequal or empty inputs, negative counts, resamples < 1 or a level outside (0, 1).
    """
    x, y = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise CortexError(f"an audit needs two equal, non-empty count lists; got {x.size} and {y.size} counts")
    if (x < 0).any() or (y < 0).any():
        raise CortexError("token counts cannot be negative")
    if resamples < 1 or not 0 < level < 1:
        raise CortexError(f"bootstrap resamples must be >= 1 and the level in (0, 1); got {resamples}, {level}")
    n = x.size
    delta = cliff_delta(x, y)
    shares = [float((x > y).mean()), float((y > x).mean())]
    if n < 2:  # one image says nothing about the spread
        return AuditStatistics(delta, None, shares, [None, None], 1.0 - sum(shares))
    rng = np.random.default_rng(seed)
    tail = (1 - level) / 2
    deltas, share_a, share_b = [], [], []
    for start in range(0, resamples, 256):  # bounded memory: 256 resamples x n at a time
        picks = rng.integers(0, n, size=(min(256, resamples - start), n))
        xa, yb = x[picks], y[picks]
        deltas.append(_deltas(xa, yb))
        share_a.append((xa > yb).mean(axis=1))
        share_b.append((yb > xa).mean(axis=1))

    def interval(values: list[np.ndarray]) -> list[float]:
        low, high = np.quantile(np.concatenate(values), [tail, 1 - tail])
        return [round(float(low), 6), round(float(high), 6)]

    return AuditStatistics(delta, interval(deltas), shares, [interval(share_a), interval(share_b)], 1.0 - sum(shares))


# -- the audit -----------------------------------------------------------------------------------------------------

def _same(a: Subject, b: Subject) -> bool:
    """The same images: the same member classes (a prompt concept is its own class)."""
    return set(a.class_pks) == set(b.class_pks)


def _resolve_groups(store: Store, model: ModelInfo, neutral: Subject, groups: str | Sequence[str | int]) -> list[Subject]:
    names = [str(g).strip() for g in (groups.split(",") if isinstance(groups, str) else groups) if str(g).strip()]
    if len(names) != 2:
        given = ", ".join(map(repr, names))
        raise CortexError(f"--groups needs exactly two groups, 'A,B' (classes or concepts); got {len(names)}: {given}")
    found = [subject(store, model, name) for name in names]
    for name, hit in zip(names, found):
        if _same(hit, neutral):
            raise CortexError(f"group {name!r} is the audited concept {neutral.name!r} itself; audit NEUTRAL against two other groups")
    if _same(found[0], found[1]):
        raise CortexError(f"the two groups {names[0]!r} and {names[1]!r} are the same; name two different groups")
    return found


def _neutral_images(store: Store, model: ModelInfo, neutral: Subject, split: str) -> list[tuple[int, ClassInfo, int, str]]:
    """(image id, class, seed, sampler) of every stored `split` image of the neutral class or concept, in identity order."""
    found = []
    for cls in neutral.members:
        rows = image_store.list_images(store, model.id, cls.pk, split)
        ids = [int(r[0]) for r in rows]
        who = image_store.identities(store, model.id, ids)
        found += [(i, cls, who[i].seed, who[i].sampler) for i in ids]
    return sorted(found, key=lambda r: (r[1].class_id, r[3], r[2]))


def _generate_hint(neutral: Subject, split: str) -> str:
    if len(neutral.members) > 1:
        names = ",".join(m.name for m in neutral.members)
        return f"cortex generate --classes '{names}' -n 20 --split {split}"
    return f"cortex generate --class '{neutral.lead.name}' -n 20 --split {split}"


def _positions(tokens: torch.Tensor, wanted: Sequence[int]) -> np.ndarray:
    """(B,) positions of each grid holding any of `wanted`."""
    if not wanted:
        return np.zeros(tokens.shape[0], dtype=np.int64)
    hit = torch.isin(tokens.reshape(tokens.shape[0], -1), torch.tensor(sorted(wanted), dtype=tokens.dtype))
    return hit.sum(dim=1).numpy().astype(np.int64)


def _judge_agreement(model: ModelInfo, tokens: torch.Tensor, groups: Sequence[Subject], leans: Sequence[int],
                     device: torch.device | str, notices: list[str], progress: Progress | None) -> dict[str, JudgeAgreement]:
    """Per judge: share of leaning images whose lean (0: A, 1: B) matches the judge's call (more probability on that group's classes)."""
    judges = judges_or_notice(model, device, notices)
    if not judges:
        return {}
    vqgm = model_registry.load_model(model, device)
    member_ids = [g.class_ids for g in groups]
    probs: dict[str, list[torch.Tensor]] = {}
    for start in range(0, tokens.shape[0], 32):
        images = common.decode(vqgm, tokens[start:start + 32])
        for name, p in judge_probabilities(judges, images).items():
            probs.setdefault(name, []).append(p)
        report(progress, min(start + 32, tokens.shape[0]), tokens.shape[0], "judges")
    out: dict[str, JudgeAgreement] = {}
    for name, parts in probs.items():
        p = torch.cat(parts)
        mass = [target_probability(p, ids) for ids in member_ids]
        if mass[0] is None or mass[1] is None:
            notices.append(f"judge {name} does not score every group's classes ({p.shape[1]} classes); no agreement for it")
            continue
        mass = torch.stack(mass, dim=1)  # (B, 2)
        call = mass.argmax(dim=1).tolist()
        compared = [(lean, c) for lean, c in zip(leans, call) if lean >= 0]
        agree = sum(1 for lean, c in compared if lean == c)
        out[name] = JudgeAgreement(round(agree / len(compared), 6) if compared else None, len(compared),
                                   [round(call.count(0) / len(call), 6), round(call.count(1) / len(call), 6)])
    return out


def _slug(text: str) -> str:
    return "-".join(normalize_name(text).replace(" ", "-").split("-"))[:40] or "x"


def _leaning_tokens(store: Store, model: ModelInfo, chosen: Sequence[Any], tops: Sequence[Any], sets: Sequence[Any], contrast: bool,
                    k: int) -> tuple[list[int], list[int], list[list[int]]]:
    """(tokens in both T*, tokens dropped as common, each group's T* tokens that lean to it); CortexError if a group has none."""
    lists = [[r.token for r in top.rows] for top in tops]
    shared = sorted(set(lists[0]) & set(lists[1]))
    kept = [[t for t in tokens if t not in shared] for tokens in lists]
    common_tokens: list[int] = []
    if contrast:  # a token the other group's own images hold as often leans neither way
        rate = [token_counts_of(store, model, s.ids)[0] / max(1, len(s)) for s in sets]
        common_tokens = sorted(t for j in (0, 1) for t in kept[j] if rate[j][t] <= rate[1 - j][t])
        kept = [[t for t in tokens if t not in common_tokens] for tokens in kept]
    for g, tokens in zip(chosen, kept):
        if not tokens:
            raise CortexError(f"none of group {g.name!r}'s top-{k} tokens leans to it (each is in the other group's T* or held as "
                              "often by its images); raise -k or index more images")
    return shared, common_tokens, kept


def run_audit(
    store: Store,
    model: ModelInfo,
    neutral: str | int,
    groups: str | Sequence[str | int],
    *,
    split: str = "test",
    k: int = DEFAULT_K,
    extractor: str | None = None,
    run: int | None = None,
    images: int | None = None,
    groups_split: str = "train",
    seed: int = 0,
    resamples: int = DEFAULT_RESAMPLES,
    contrast: bool = True,
    device: torch.device | str = "cpu",
    out_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> AuditResult:
    """Audit which of two groups the stored images of `neutral` lean toward; write JSON + PNG and store the result.

    Args:
        store: the open database.
        model: the model.
        neutral: the audited class or concept (name or class id).
        groups: two classes or concepts, neither of them `neutral`: 'A,B' or a sequence of two names or ids.
        split: whose stored images of the neutral concept are audited ('test' by default).
        k: T* tokens per group (before the shared ones are dropped).
        extractor, run, images: which run the groups' T* are read from and which seeds it counts (as `top_tokens`).
        groups_split: the split of the images the groups' T* count ('train', as `top-tokens` reads it).
        seed: keys the bootstrap (with the model, neutral, groups and split).
        resamples: bootstrap resamples of the 95% intervals.
        contrast: also drop a group's T* token that the other group's T* images hold at least as often (per image) as
            its own: it cannot tell the groups apart (False: drop only tokens in both T*, as the authors' code does).
        device: where the judges (if any) run.
        out_dir: where `audit.json` and the plot go (default `$CORTEX_HOME/reports/<model>/`).
        progress: progress(done, total, info) callback.

    Returns:
        AuditResult (also stored in the `evaluations` table as kind 'audit').

    Raises:
        CortexError: not two groups, a group that is the neutral concept, an unknown name, a group not indexed, no stored
            images of the split (or none left once the groups' own T* images are left out), groups whose T* are the same
            tokens, k or resamples < 1. Nothing is written then.
    """
    if k < 1:
        raise CortexError(f"-k must be a positive number of tokens, got {k}")
    if resamples < 1:
        raise CortexError(f"--resamples must be >= 1, got {resamples}")
    target = subject(store, model, neutral)
    chosen = _resolve_groups(store, model, target, groups)
    tops = [top_tokens(store, model, g, extractor=extractor, k=k, run=run, split=groups_split, images=images) for g in chosen]
    sets = [run_images(store, pick_run(store, model, g, run=top.run_id), g, groups_split, images) for g, top in zip(chosen, tops)]
    counted = set(sets[0].ids) | set(sets[1].ids)
    shared, common_tokens, kept = _leaning_tokens(store, model, chosen, tops, sets, contrast, k)
    found = _neutral_images(store, model, target, split)
    if not found:
        raise CortexError(f"{target.name!r} has no stored {split} images to audit; run `{_generate_hint(target, split)}` first")
    audited = [r for r in found if r[0] not in counted]
    excluded = len(found) - len(audited)
    if not audited:
        raise CortexError(f"all {len(found)} stored {split} images of {target.name!r} are images the groups' T* counted; "
                          f"audit another split (`{_generate_hint(target, 'test')}`)")
    # the shared prologue less `begin`'s extractor and class lists, which an audit does not use (its run is chosen above)
    run_ = common.Evaluation(store, model, common.prepare_out_dir(out_dir, model), [], [], [], device, progress)
    tokens = image_tokens(store, model, [r[0] for r in audited])
    counts = [_positions(tokens, kept[0]), _positions(tokens, kept[1])]
    names = [g.name for g in chosen]
    key = derive_seed(KIND, model.name, target.name, names[0], names[1], split, seed)
    stats = audit_statistics(counts[0], counts[1], seed=key, resamples=resamples)
    leans = [0 if a > b else 1 if b > a else -1 for a, b in zip(counts[0].tolist(), counts[1].tolist())]
    notices: list[str] = []
    agreement = _judge_agreement(model, tokens, chosen, leans, device, notices, progress)
    per_image = [AuditImage(cls.name, int(sd), sampler, [int(counts[0][i]), int(counts[1][i])], names[leans[i]] if leans[i] >= 0 else "")
                 for i, (_, cls, sd, sampler) in enumerate(audited)]
    audit_groups = [
        AuditGroup(g.name, kept[j], round(stats.shares[j], 6), stats.share_cis[j], round(float(counts[j].mean()), 6),
                   [m.name for m in g.members], top.run_id, top.extractor, groups_split, top.images_indexed, top.image_seeds)
        for j, (g, top) in enumerate(zip(chosen, tops))
    ]
    settings = {"neutral": target.name, "groups": names, "split": split, "k": k, "extractor": extractor, "run": run,
                "images": images, "groups_split": groups_split, "seed": seed, "resamples": resamples, "contrast": contrast}
    result = AuditResult(
        model=model.name, neutral=target.name, neutral_members=[m.name for m in target.members], split=split, images=len(audited),
        groups=audit_groups, cliff_delta=round(stats.cliff_delta, 6), cliff_delta_ci=stats.cliff_delta_ci, ties=round(stats.ties, 6),
        excluded=excluded, shared_tokens=shared, common_tokens=common_tokens, contrast=contrast, k=k, resamples=resamples, level=LEVEL,
        seed=seed, per_image=per_image,
        judges=agreement, notices=notices, settings=settings,
    )
    stem = f"audit_{_slug(target.name)}__{_slug(names[0])}__{_slug(names[1])}"
    plot = plot_counts(result, counts, run_.out / f"{stem}.png")
    return common.finish(run_, KIND, result, plot, settings, name=stem)


def plot_counts(result: AuditResult, counts: Sequence[np.ndarray], path: Path) -> Path:
    """The two count distributions as grouped bars: audited images by positions holding each group's tokens (binned past 24 values)."""
    top = int(max(c.max(initial=0) for c in counts))
    width = max(1, -(-(top + 1) // 24))  # values per bar, so that at most 24 bars share the axis
    edges = list(range(0, top + 1, width))
    categories = [str(lo) if width == 1 else f"{lo}-{min(lo + width - 1, top)}" for lo in edges]
    bars = {f"{g.name} ({len(g.tokens)} tokens)": (np.bincount(c // width, minlength=len(edges))[:len(edges)]).tolist()
            for g, c in zip(result.groups, counts)}
    ci = result.cliff_delta_ci
    interval = f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else ""
    return plots.bar_panels(categories, {f"{result.neutral}: positions per image (x)": bars}, path, ylabel=f"{result.split} images",
                            title=f"Cliff's delta {result.cliff_delta:+.2f}{interval}")


def tables(r: dict) -> list[TableSpec]:
    """One row per group (its tokens, share and interval), Cliff's delta in the title (`cortex audit`)."""
    ci = r.get("cliff_delta_ci")
    delta = f"Cliff's delta {signed(r['cliff_delta'])}" + (f" [{signed(ci[0])}, {signed(ci[1])}]" if ci else "")
    rows = [[g["name"], " ".join(map(str, g["tokens"])), num(g["mean_count"], 2), num(g["share"], 2),
             f"[{num(g['share_ci'][0], 2)}, {num(g['share_ci'][1], 2)}]" if g.get("share_ci") else "n/a"] for g in r["groups"]]
    out = [TableSpec(f"{r['neutral']}: {r['images']} {r['split']} images audited; {delta} (> 0: toward the first group); "
                     f"ties {num(r['ties'], 2)}", ["group", "tokens", "mean count", "share", "95% CI"], rows)]
    judges = [[name, num(j["agreement"], 2), str(j["compared"])] for name, j in r.get("judges", {}).items()]
    if judges:
        out.append(TableSpec("each image's lean vs the judge's call (more probability on that group's classes)",
                             ["judge", "agreement", "leaning images"], judges))
    return out


__all__ = ["AuditGroup", "AuditImage", "AuditResult", "AuditStatistics", "DEFAULT_K", "DEFAULT_RESAMPLES", "JudgeAgreement",
           "audit_statistics", "cliff_delta", "plot_counts", "run_audit", "tables"]

