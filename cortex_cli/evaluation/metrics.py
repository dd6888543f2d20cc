"""Pure metric functions of the evaluations (no model, no database).

Sign conventions follow the paper: every delta is `after - before`, so masking that hurts the
judge gives ΔA < 0 and ΔP < 0 (Table 2), and a successful edit gives ΔP_orig < 0 and ΔP_targ > 0
(Table 3, eq. 10).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

INSIDE_FRACTION = 0.5  # a token's patch is "on the object" when >= half its pixels are in the mask


@dataclass(frozen=True)
class MaskingEffect:
    """One judge's accuracy and true-class probability before and after masking (Table 2 cell)."""

    acc: float  # top-1 accuracy before masking
    p: float  # mean probability of the true class before
    acc_after: float
    p_after: float
    delta_acc: float  # acc_after - acc
    delta_p: float  # p_after - p
    mean_n: float  # mean number of masked positions per image


@dataclass(frozen=True)
class EditEffect:
    """One judge's scores of source images before and after an edit (Table 3 cell)."""

    acc_orig: float  # top-1 accuracy on the original label before editing
    p_orig: float  # mean P(original label) before
    p_targ: float  # mean P(target label) before
    p_orig_after: float
    p_targ_after: float
    delta_p_orig: float  # eq. 10: P_orig(optimised) - P_orig(initial)
    delta_p_targ: float  # eq. 10: P_targ(optimised) - P_targ(initial)
    acc_targ_after: float  # share of edited images the judge now calls the target


def accuracy_and_probability(probs: torch.Tensor, labels: Sequence[int] | torch.Tensor) -> tuple[float, float]:
    """(top-1 accuracy, mean probability of the label) of judge outputs.

    Args:
        probs: (B, C) softmax probabilities.
        labels: (B,) class indices.
    """
    labels = torch.as_tensor(labels, dtype=torch.long, device=probs.device).reshape(-1)
    if probs.shape[0] != labels.shape[0] or probs.shape[0] == 0:
        raise ValueError(f"need one label per row of probabilities; got {probs.shape[0]} rows, {labels.shape[0]} labels")
    acc = (probs.argmax(-1) == labels).float().mean().item()
    p = probs.gather(1, labels[:, None]).float().mean().item()
    return acc, p


def masking_effect(
    probs_before: torch.Tensor,
    probs_after: torch.Tensor,
    labels: Sequence[int] | torch.Tensor,
    n_masked: Sequence[int] | torch.Tensor,
) -> MaskingEffect:
    """Accuracy/probability of the true class before and after masking, and their changes.

    Args:
        probs_before, probs_after: (B, C) judge probabilities of the same images.
        labels: (B,) true classes.
        n_masked: (B,) number of masked token positions per image.
    """
    acc, p = accuracy_and_probability(probs_before, labels)
    acc2, p2 = accuracy_and_probability(probs_after, labels)
    n = torch.as_tensor(n_masked, dtype=torch.float).reshape(-1)
    return MaskingEffect(acc, p, acc2, p2, acc2 - acc, p2 - p, n.mean().item() if n.numel() else 0.0)


def edit_effect(
    probs_before: torch.Tensor,
    probs_after: torch.Tensor,
    orig: Sequence[int] | torch.Tensor,
    targ: Sequence[int] | torch.Tensor,
) -> EditEffect:
    """Table 3 numbers of one judge: Acc_orig, P_orig, P_targ before, ΔP_orig/ΔP_targ (eq. 10).

    Args:
        probs_before: (B, C) judge probabilities of the unedited images.
        probs_after: (B, C) of the edited images (the final optimisation step).
        orig, targ: (B,) original and target labels.
    """
    acc_orig, p_orig = accuracy_and_probability(probs_before, orig)
    _, p_targ = accuracy_and_probability(probs_before, targ)
    _, p_orig2 = accuracy_and_probability(probs_after, orig)
    acc_targ2, p_targ2 = accuracy_and_probability(probs_after, targ)
    return EditEffect(acc_orig, p_orig, p_targ, p_orig2, p_targ2, p_orig2 - p_orig, p_targ2 - p_targ, acc_targ2)


def curve_auc(fractions: Sequence[float], values: Sequence | torch.Tensor) -> torch.Tensor:
    """Area under curves by the trapezoid rule over x = `fractions`, divided by the x range: the curves' mean height.

    With x running over the whole range 0..1 (every position) this is RISE's AUC (Petsiuk et al. 2018);
    over a part of it (the paper's n = 0..50 of 256) it stays in the units of the curve (a probability).

    Args:
        fractions: (n,) increasing x values, e.g. masked positions / m^2, at least two.
        values: (..., n) curve heights at those x.

    Returns:
        float64 tensor of shape `values.shape[:-1]` (a 0-d tensor for one curve).
    """
    x = torch.as_tensor(fractions, dtype=torch.float64).reshape(-1)
    y = torch.as_tensor(values, dtype=torch.float64)
    if x.numel() < 2 or y.shape[-1] != x.numel() or not bool((x[1:] > x[:-1]).all()):
        raise ValueError(f"need >= 2 increasing x values and one y per x; got x {x.tolist()} and y of shape {tuple(y.shape)}")
    return torch.trapezoid(y, x, dim=-1) / (x[-1] - x[0])


def ranked_positions(scores: torch.Tensor) -> torch.Tensor:
    """Flat positions of an (m, m) score map, highest first (ties: lower position first)."""
    flat = scores.reshape(-1).float()
    return torch.sort(-flat, stable=True).indices


def patches_inside(object_mask: torch.Tensor, grid: int, fraction: float = INSIDE_FRACTION) -> torch.Tensor:
    """Bool (m, m): True where at least `fraction` of the token's pixel patch lies in `object_mask`.

    Args:
        object_mask: (H, W) bool, the ground-truth object pixels.
        grid: m, the token grid side (H and W divisible by m).
        fraction: overlap threshold (default 0.5).
    """
    mask = torch.as_tensor(object_mask).float()
    h, w = mask.shape
    if h % grid or w % grid:
        raise ValueError(f"a {h}x{w} mask does not split into a {grid}x{grid} grid")
    cover = mask.reshape(grid, h // grid, grid, w // grid).mean(dim=(1, 3))
    return cover >= fraction


def precision_at_n(ranking: torch.Tensor | Sequence[int], inside: torch.Tensor, n: int) -> float:
    """Fraction of the first `n` ranked positions whose patch is inside the object."""
    top = torch.as_tensor(ranking, dtype=torch.long).reshape(-1)[:n]
    if top.numel() == 0:
        return float("nan")
    return inside.reshape(-1)[top].float().mean().item()


def pointing_game(ranking: torch.Tensor | Sequence[int], inside: torch.Tensor) -> float:
    """1.0 when the top-1 position is inside the object, else 0.0."""
    return precision_at_n(ranking, inside, 1)


def random_floor(inside: torch.Tensor) -> float:
    """Expected precision@n (any n) and pointing game of uniformly random distinct positions."""
    return inside.float().mean().item()


def top_n_overlap(scores_a: torch.Tensor, scores_b: torch.Tensor, n: int) -> float:
    """|top-n(a) ∩ top-n(b)| / n of two score maps of the same image (1.0 = same top-n set)."""
    a = set(ranked_positions(scores_a)[:n].tolist())
    b = set(ranked_positions(scores_b)[:n].tolist())
    return len(a & b) / max(1, min(n, len(a)))


def mean(values: Sequence[float]) -> float:
    """Mean of finite values (nan when there are none)."""
    vals = [v for v in values if v == v]
    return sum(vals) / len(vals) if vals else float("nan")


@dataclass(frozen=True)
class BootstrapCI:
    """Mean paired difference (a - b) over units and its percentile bootstrap interval."""

    mean: float  # mean over units of (a - b), each unit first averaged over its repeats
    low: float  # lower end of the interval
    high: float  # upper end
    level: float  # e.g. 0.95
    n_units: int  # units resampled (sources)
    resamples: int


def paired_bootstrap_ci(
    a: Sequence | torch.Tensor,
    b: Sequence | torch.Tensor,
    *,
    seed: int,
    resamples: int = 2000,
    level: float = 0.95,
    strata: Sequence | None = None,
) -> BootstrapCI:
    """Percentile bootstrap interval of mean(a - b), resampling units (rows) with replacement.

    Repeats nested in a unit (columns: e.g. optimisation seeds of one source image) are averaged
    first, so the unit, not the repeat, is what is resampled: repeats of one source are not
    independent evidence. With `strata` (one label per unit), units are resampled within each
    stratum, keeping every stratum's count as designed (e.g. sources per edit direction).

    Args:
        a, b: (units,) or (units, repeats) paired values (same shape).
        seed: seeds the resampling (derive it from stable identities).
        resamples: bootstrap resamples (2000 by default).
        level: coverage of the interval.
        strata: optional stratum label of each unit.

    Returns:
        BootstrapCI (mean difference, interval ends, level, units, resamples).
    """
    a_ = torch.as_tensor(a, dtype=torch.float64).numpy()
    b_ = torch.as_tensor(b, dtype=torch.float64).numpy()
    if a_.shape != b_.shape or a_.ndim not in (1, 2) or a_.shape[0] == 0:
        raise ValueError(f"need two equal (units,) or (units, repeats) arrays with >= 1 unit; got {a_.shape} and {b_.shape}")
    if not 0 < level < 1 or resamples < 1:
        raise ValueError(f"level must be in (0, 1) and resamples >= 1; got {level}, {resamples}")
    diff = a_ - b_
    unit = diff.mean(axis=1) if diff.ndim == 2 else diff
    n = unit.shape[0]
    if n < 2:  # one unit says nothing about the spread: no interval, never significant
        return BootstrapCI(float(unit.mean()), float("nan"), float("nan"), level, n, resamples)
    rng = np.random.default_rng(seed)
    if strata is None:
        groups = [np.arange(n)]
    else:
        labels = list(strata)
        if len(labels) != n:
            raise ValueError(f"need one stratum label per unit; got {len(labels)} for {n} units")
        order = list(dict.fromkeys(labels))
        groups = [np.array([i for i, s in enumerate(labels) if s == g]) for g in order]
        if min(len(g) for g in groups) < 2:  # a stratum of one would be resampled with no spread at all
            raise ValueError("every stratum needs at least 2 units")
    sums = np.zeros(resamples)
    for g in groups:
        picks = g[rng.integers(0, len(g), size=(resamples, len(g)))]
        sums += unit[picks].sum(axis=1)
    means = sums / n
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return BootstrapCI(float(unit.mean()), float(low), float(high), level, n, resamples)


def verdict(ci: BootstrapCI, higher_is_better: bool = True) -> str:
    """'win' when the interval of (a - b) lies wholly on a's better side of 0, 'loss' on the other, else 'n.s.' (also: no interval)."""
    if ci.low > 0 or ci.high < 0:
        better = ci.low > 0 if higher_is_better else ci.high < 0
        return "win" if better else "loss"
    return "n.s."
