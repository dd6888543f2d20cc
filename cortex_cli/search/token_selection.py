"""Optimisation-based token explanation (paper §3.4, eq. 7-9, appendix A.2) and its embedding baseline.

The one optimiser of cortex: `optimize_batch` runs a batch of edits (the edit evaluation), and
`optimize_tokens` is a batch of one (`cortex edit`, every restart of `cortex optimize`).

Token selection: the region's rows of a matrix P (m^2 x K) of logits; every step draws hard
Gumbel-Softmax samples of them (`F.gumbel_softmax`, straight-through gradients), builds
E = onehot · C (eq. 7) with the rows outside the region pinned to the source tokens, and takes an
Adam step on P. Rows outside the region are no parameters at all, which is eq. 8's gradient mask.
The result is the argmax of P in the region (eq. 9).

Embedding baseline: optimise the region's d-dimensional embedding directly with the same loss and
steps, then snap every vector to its nearest codebook entry (Euclidean vector quantisation).

Randomness: each edit has its own seed. Its random init draws from a CPU generator seeded with it,
and its Gumbel noise from its own stream of torch's default generator on the optimiser's device,
seeded with it too (swapped in around its draw; the caller's random state is left as it was). An
edit's result therefore depends on its seed alone, not on the batch it runs in, up to float rounding
(on the CPU a batch of one is `optimize_tokens` bit for bit).

Targets: an edit's target is a class id (its logit, or its log-probability) or a concept
(`targets.Target`, paper §3.1). `--objective` applies to the concept's score the way it applies to a
class's logit: 'logit' maximises the concept's score (a union: logsumexp of its members' logits, the
index's default f_Y; an extractor trained for the concept: its log-odds), 'log-prob' maximises
log P(concept | E) (a union: the log of its members' summed softmax probabilities; a binary
extractor: log softmax of its concept output). For one class both are exactly the class's objective;
a class target takes the class code path, unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..core.errors import CortexError
from ..extractors.architectures import logits_of
from ..extractors.subsets import require_classes
from ..core.progress import Progress, report
from ..models.targets import BINARY, Target

INITS = ("source", "random")
OBJECTIVES = ("logit", "log-prob")
METHODS = ("token", "embedding")
# a concept's union score each objective maximises (module docstring): its logit analogue, or log P(concept)
UNION_RULE = {"logit": "logsumexp", "log-prob": "log-prob"}
# 'source' init: the source token's logit is set so that it holds this much of each region row's
# softmax at step 0 (a gap of log(0.9/0.1 * (K-1)) over the other tokens, 7.0 for K=128, 11.9 for
# K=16384): hard samples mostly reproduce the source, yet 10% of draws explore other tokens and the
# soft probabilities are far enough from one-hot for the straight-through gradient to move P.
SOURCE_INIT_PROB = 0.9
RANDOM_INIT_STD = 0.01  # 'random' init: near-uniform logits, seeded
TOKEN_LR = 0.1  # Adam step on the logits of P
EMBEDDING_LR = 0.05  # Adam step on E, in units of the codebook's standard deviation


@dataclass
class OptimizeSettings:
    """How `optimize_batch` / `optimize_tokens` search; defaults are the ones `cortex edit` uses."""

    steps: int = 3000
    lr: float | None = None  # None: TOKEN_LR for 'token', EMBEDDING_LR * std(C) for 'embedding'
    tau: float = 1.0  # Gumbel-Softmax temperature (of the soft sample the gradient flows through)
    tau_final: float | None = None  # set: anneal exponentially from tau to tau_final over the steps
    alpha: float = 1e-4  # weight of the ||E||^2 regulariser (eq. 8), summed over the region
    init: str = "source"  # region rows start at the source tokens, or 'random'
    # 'logit' (the paper's eq. 8: -f_Y(E)[target]) or 'log-prob' (-log softmax(f_Y(E))[target]).
    # 'logit' is the default by measurement (benchmarks/tune_edit.py, 16 mini part-pair cases, 300 steps, CE):
    # judges' P(target) 0.003 -> 0.83 (ResNet) / 0.07 -> 0.56 (ViT) vs 0.50 / 0.27 with 'log-prob', whose
    # gradient fades once the extractor is confident, long before the judges are.
    objective: str = "logit"
    method: str = "token"  # 'token' (Gumbel token selection) or 'embedding' (baseline)
    seed: int = 0
    snapshot_steps: tuple[int, ...] = ()  # after how many steps to record the region's tokens

    def validate(self) -> "OptimizeSettings":
        """These settings, or CortexError naming the bad value."""
        if int(self.steps) <= 0:
            raise CortexError(f"--steps must be a positive number of optimisation steps, got {self.steps}")
        if self.lr is not None and not self.lr > 0:
            raise CortexError(f"--lr must be > 0, got {self.lr}")
        if not self.tau > 0:
            raise CortexError(f"--tau must be > 0, got {self.tau}")
        if self.tau_final is not None and not self.tau_final > 0:
            raise CortexError(f"--tau-final must be > 0, got {self.tau_final}")
        if not self.alpha >= 0:
            raise CortexError(f"--l2-weight must be >= 0, got {self.alpha}")
        for flag, value, allowed in (("--init", self.init, INITS), ("--objective", self.objective, OBJECTIVES), ("--space", self.method, METHODS)):
            if value not in allowed:
                raise CortexError(f"{flag} {value!r} is not one of {', '.join(allowed)}")
        bad = [s for s in self.snapshot_steps if not 1 <= s <= self.steps]
        if bad:
            raise CortexError(f"snapshot step {bad[0]} is outside 1..{self.steps}")
        return self

    def tau_at(self, step: int) -> float:
        """Temperature at 0-based `step` (exponential schedule when tau_final is set)."""
        if self.tau_final is None or self.steps <= 1:
            return self.tau
        return self.tau * (self.tau_final / self.tau) ** (step / (self.steps - 1))


SETTING_ALIASES = {"space": "method"}  # the API's and the CLI's name of what the optimiser moves


def optimize_settings(base: OptimizeSettings | None = None, **options: Any) -> OptimizeSettings:
    """`base` (default: the defaults) with the named fields replaced (`space` is `method`; None leaves a field), validated.

    Raises:
        CortexError: an unknown option, or a value out of range.
    """
    names = {f.name for f in dataclasses.fields(OptimizeSettings)}
    given = {SETTING_ALIASES.get(k, k): v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - names)
    if unknown:
        raise CortexError(f"unknown optimiser option(s) {', '.join(unknown)}; known: {', '.join(sorted(names - {'method'} | {'space'}))}")
    return dataclasses.replace(base or OptimizeSettings(), **given).validate()


@dataclass
class OptimizeResult:
    """The optimised token grid and how it got there."""

    tokens: torch.Tensor  # LongTensor (m x m): source outside the region, eq. 9 inside
    loss_trace: list[float]  # loss of every step
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)  # step -> tokens (m x m)
    changed: list[tuple[int, int, int]] = field(default_factory=list)  # (position, old, new)


@dataclass
class BatchResult:
    """The optimised token grids of a batch of edits."""

    tokens: torch.Tensor  # LongTensor (B x m x m) on the CPU
    loss_trace: torch.Tensor  # (steps x B): every edit's loss at every step, on the CPU
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)  # step -> tokens (B x m x m)


EditTarget = int | Target  # a class id, or a concept's target (`targets.Target`, not 'class')


def _is_concept(target: object) -> bool:
    return isinstance(target, Target) and not target.is_class


def concept_objective(logits: torch.Tensor, target: Target, objective: str) -> torch.Tensor:
    """A concept's objective value (B,) from class logits (B x classes): its score ('logit') or log P(concept) ('log-prob').

    A union's score is logsumexp of its members' logits and log P is that minus logsumexp of all logits (the log of
    the members' summed softmax); a binary extractor's score is its log-odds z_Y - z_notY and log P its log softmax.
    """
    logits = logits.float()
    if target.rule == BINARY:
        if logits.shape[-1] != 2:
            raise CortexError(f"a binary concept score needs an extractor with 2 outputs, this one has {logits.shape[-1]}")
        return logits[:, 1] - logits[:, 0] if objective == "logit" else F.log_softmax(logits, dim=-1)[:, 1]
    members = torch.tensor(sorted(set(target.class_ids)), dtype=torch.long, device=logits.device)
    score = torch.logsumexp(logits.index_select(1, members), dim=1)
    return score if objective == "logit" else score - torch.logsumexp(logits, dim=1)


def objective_loss(extractor: torch.nn.Module, embedding: torch.Tensor, targets: torch.Tensor | Sequence[EditTarget],
                   objective: str) -> torch.Tensor:
    """Per-edit -f_Y(E)[target] ('logit') or -log softmax(f_Y(E))[target] ('log-prob'), for E (B x d x m x m) -> (B,).

    A concept target (`targets.Target`) is scored by `concept_objective`; class ids take the class path exactly.
    """
    logits = logits_of(extractor(embedding)).float()
    if not isinstance(targets, torch.Tensor) and any(_is_concept(t) for t in targets):
        return -torch.cat([concept_objective(logits[i:i + 1], t, objective) if _is_concept(t)
                           else _class_objective(logits[i:i + 1], torch.tensor([[int(t)]], device=logits.device), objective)
                           for i, t in enumerate(targets)])
    targets = torch.as_tensor(targets, dtype=torch.long, device=logits.device).reshape(-1, 1)
    return -_class_objective(logits, targets, objective)


def _class_objective(logits: torch.Tensor, targets: torch.Tensor, objective: str) -> torch.Tensor:
    if objective == "logit":
        return logits.gather(1, targets)[:, 0]
    return F.log_softmax(logits, dim=-1).gather(1, targets)[:, 0]


def _default_generator(device: torch.device) -> torch.Generator:
    if device.type == "cuda":
        return torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    if device.type == "cpu":
        return torch.default_generator
    raise CortexError(f"token selection runs on cpu or cuda, not {device.type}")


class GumbelStreams:
    """One Gumbel noise stream per edit for `F.gumbel_softmax`, which draws from the device's default generator.

    Edit i's stream starts as that generator seeded with seeds[i]; its state is swapped in around its
    draw and the caller's state put back after, so the global random state is left as it was.
    """

    def __init__(self, seeds: Sequence[int], device: torch.device):
        self.generator = _default_generator(device)
        self.states = [torch.Generator(device=device).manual_seed(int(s)).get_state() for s in seeds]

    def hard_sample(self, logits: torch.Tensor, tau: float) -> torch.Tensor:
        """Straight-through hard Gumbel-Softmax samples (B x n x K) of logits (B x n x K), edit i from stream i."""
        saved = self.generator.get_state()
        samples = []
        try:
            for i, rows in enumerate(logits.unbind(0)):
                self.generator.set_state(self.states[i])
                samples.append(F.gumbel_softmax(rows, tau=tau, hard=True))
                self.states[i] = self.generator.get_state()
        finally:
            self.generator.set_state(saved)
        return torch.stack(samples)


class _RegionSearch(torch.nn.Module):
    """A batch of token grids (B x m x m) whose `index` positions (B x n) are searched; the rest is pinned."""

    def __init__(self, codebook: torch.Tensor, sources: torch.Tensor, index: torch.Tensor):
        super().__init__()
        self.grid = sources.shape[-1]
        self.register_buffer("codebook", codebook.detach())
        self.register_buffer("source", sources.reshape(sources.shape[0], -1).long())
        self.register_buffer("index", index.long())
        self.register_buffer("base", self.codebook[self.source])  # (B, m^2, d): the pinned rows, exactly onehot(source) · C

    def embed(self, vectors: torch.Tensor) -> torch.Tensor:
        """E (B x d x m x m): the source's rows with the region's replaced by `vectors` (B x n x d)."""
        spread = self.index[..., None].expand(-1, -1, self.codebook.shape[1])
        flat = self.base.scatter(1, spread, vectors)
        return flat.transpose(1, 2).reshape(flat.shape[0], -1, self.grid, self.grid)

    def _grids(self, region_tokens: torch.Tensor) -> torch.Tensor:
        return self.source.scatter(1, self.index, region_tokens).reshape(-1, self.grid, self.grid)


class TokenSelection(_RegionSearch):
    """The region rows of the token selection matrix P (B x n x K) of a batch of edits."""

    def __init__(self, codebook: torch.Tensor, sources: torch.Tensor, index: torch.Tensor, init: str, seeds: Sequence[int]):
        super().__init__(codebook, sources, index)
        n_embed = codebook.shape[0]
        start = self.source.gather(1, self.index)
        gap = math.log(SOURCE_INIT_PROB / (1 - SOURCE_INIT_PROB) * max(n_embed - 1, 1))
        if init == "random":  # seeded near-uniform logits; the rows of a full m^2 x K draw, so the region's place matters
            logits = torch.stack([
                (torch.randn(self.source.shape[1], n_embed, generator=torch.Generator().manual_seed(int(s))) * RANDOM_INIT_STD)[i.cpu()]
                for s, i in zip(seeds, self.index)
            ]).to(codebook.device)
        else:
            logits = torch.zeros(*start.shape, n_embed, device=codebook.device).scatter_(2, start[..., None], gap)
        self.P = torch.nn.Parameter(logits)
        self.streams = GumbelStreams(seeds, codebook.device)

    def region_vectors(self, tau: float) -> torch.Tensor:
        """The region's rows of E (B x n x d): hard Gumbel-Softmax samples of P times C (eq. 7)."""
        return self.streams.hard_sample(self.P, tau) @ self.codebook

    def embedding(self, tau: float) -> torch.Tensor:
        """E (B x d x m x m) with the region's rows sampled (eq. 7)."""
        return self.embed(self.region_vectors(tau))

    def tokens(self) -> torch.Tensor:
        """Eq. 9: argmax of P inside the region, the source outside (B x m x m)."""
        return self._grids(self.P.detach().argmax(dim=-1))


def nearest_tokens(vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Nearest codebook entry (Euclidean) of every row of `vectors` (n x d) -> LongTensor (n)."""
    return torch.cdist(vectors.float(), codebook.float()).argmin(dim=-1)


class RegionEmbedding(_RegionSearch):
    """The baseline: the region's embedding vectors (B x n x d) as free parameters; the rest is the source's E."""

    def __init__(self, codebook: torch.Tensor, sources: torch.Tensor, index: torch.Tensor, init: str, seeds: Sequence[int]):
        super().__init__(codebook, sources, index)
        if init == "random":
            scale, centre = self.codebook.std(dim=0), self.codebook.mean(dim=0)
            noise = [torch.randn(self.index.shape[1], codebook.shape[1], generator=torch.Generator().manual_seed(int(s))) for s in seeds]
            start = centre + scale * torch.stack(noise).to(codebook.device)
        else:
            start = self.codebook[self.source.gather(1, self.index)].clone()
        self.vectors = torch.nn.Parameter(start)

    def region_vectors(self, tau: float = 1.0) -> torch.Tensor:
        """The region's rows of E (B x n x d): the parameters themselves."""
        return self.vectors

    def embedding(self, tau: float = 1.0) -> torch.Tensor:
        return self.embed(self.vectors)

    def tokens(self) -> torch.Tensor:
        d = self.codebook.shape[1]
        return self._grids(nearest_tokens(self.vectors.detach().reshape(-1, d), self.codebook).reshape(self.index.shape))


def _check_batch(extractor: torch.nn.Module, codebook: torch.Tensor, sources: torch.Tensor, masks: torch.Tensor,
                 targets: Sequence[EditTarget], seeds: Sequence[int]) -> torch.Tensor:
    """The region positions (B x n, raster order) of a valid batch, or CortexError."""
    if sources.dim() != 3 or sources.shape[-1] != sources.shape[-2]:
        raise CortexError(f"source tokens must be square grids (B x m x m), got {tuple(sources.shape)}")
    if masks.shape != sources.shape:
        raise CortexError(f"region mask {tuple(masks.shape[1:])} does not match the token grid {tuple(sources.shape[1:])}")
    batch = sources.shape[0]
    if batch == 0 or len(targets) != batch or len(seeds) != batch:
        raise CortexError(f"a batch needs one source, region, target and seed per edit, got {batch}, {len(targets)} and {len(seeds)}")
    counts = masks.reshape(batch, -1).sum(dim=1)
    if not bool((counts > 0).all()):
        raise CortexError("the region is empty; give at least one token position")
    if not bool((counts == counts[0]).all()):
        raise CortexError(f"the edits of a batch must change equally many positions, got {sorted(set(counts.tolist()))}")
    n_embed = codebook.shape[0]
    if int(sources.min()) < 0 or int(sources.max()) >= n_embed:
        raise CortexError(f"source tokens must lie in 0..{n_embed - 1} (the codebook size is {n_embed})")
    with torch.no_grad():
        n_classes = logits_of(extractor(F.embedding(sources[:1].to(codebook.device), codebook).permute(0, 3, 1, 2))).shape[-1]
    if any(isinstance(t, Target) and t.rule == BINARY for t in targets) and n_classes != 2:
        raise CortexError(f"a binary concept score needs an extractor with 2 outputs, this one has {n_classes}")
    ids = [c for t in targets for c in (t.class_ids if _is_concept(t) else () if isinstance(t, Target) else (int(t),))]
    bad = [c for c in ids if not 0 <= c < n_classes]
    if bad:
        raise CortexError(f"target class {bad[0]} is outside the extractor's {n_classes} classes")
    require_classes(extractor, ids)
    return masks.reshape(batch, -1).nonzero()[:, 1].reshape(batch, -1)


def optimize_batch(
    extractor: torch.nn.Module,
    codebook: torch.Tensor,
    sources: torch.Tensor,
    masks: torch.Tensor,
    targets: Sequence[EditTarget],
    seeds: Sequence[int],
    settings: OptimizeSettings = OptimizeSettings(),
    progress: Progress | None = None,
) -> BatchResult:
    """Search the codebook for the tokens of each edit's region that make the extractor predict its target.

    Every edit keeps its own parameters, Adam state (Adam is elementwise) and random streams, and the
    loss is the sum of per-edit losses through the extractor, so with an eval-mode extractor each edit
    follows its own single-edit trajectory (`optimize_tokens`) up to float rounding.

    Args:
        extractor: the information extractor f_Y (E (B x d x m x m) -> class logits); frozen, eval mode.
        codebook: C (K x d), on the extractor's device.
        sources: LongTensor (B x m x m), the images' tokens (kept outside the regions).
        masks: BoolTensor (B x m x m), True where tokens may change; equally many positions per edit.
        targets: (B,) the class index whose logit / log-probability each edit maximises, or a concept's
            `targets.Target` (its score / log P(concept), see the module docstring).
        seeds: (B,) each edit's seed (`settings.seed` is not used).
        settings: steps, lr, temperature schedule, alpha, init, objective, method, snapshots.
        progress: called as progress(steps done, steps, info) while optimising.

    Returns:
        BatchResult: tokens (B x m x m, the sources outside the regions), every edit's loss at every
        step, and the argmax (or snapped) tokens at `settings.snapshot_steps`.

    Raises:
        CortexError: bad settings, shapes that do not match, an empty region or a target out of range.
    """
    settings.validate()
    device = codebook.device
    codebook = codebook.detach()
    sources, masks = sources.long(), masks.bool()
    index = _check_batch(extractor, codebook, sources, masks, targets, seeds).to(device)
    if settings.method == "token":
        search: TokenSelection | RegionEmbedding = TokenSelection(codebook, sources.to(device), index, settings.init, seeds)
        lr = settings.lr if settings.lr is not None else TOKEN_LR
        params = [search.P]
    else:
        search = RegionEmbedding(codebook, sources.to(device), index, settings.init, seeds)
        lr = settings.lr if settings.lr is not None else EMBEDDING_LR * float(codebook.std())
        params = [search.vectors]
    optimizer = torch.optim.Adam(params, lr=lr)
    concept = any(_is_concept(t) for t in targets)
    target = list(targets) if concept else torch.as_tensor([int(t) for t in targets], dtype=torch.long, device=device)
    trace: list[torch.Tensor] = []
    snapshots: dict[int, torch.Tensor] = {}
    wanted = set(settings.snapshot_steps)
    report_every = max(1, settings.steps // 100)
    for step in range(settings.steps):
        optimizer.zero_grad(set_to_none=True)
        vectors = search.region_vectors(settings.tau_at(step))
        loss = objective_loss(extractor, search.embed(vectors), target, settings.objective)
        if settings.alpha:
            # the region is all that can change: the rest of ||E||^2 is a constant (summed in E's d x n order)
            loss = loss + settings.alpha * vectors.transpose(1, 2).contiguous().pow(2).sum(dim=(1, 2))
        loss.sum().backward()
        optimizer.step()
        trace.append(loss.detach())
        if step + 1 in wanted:
            snapshots[step + 1] = search.tokens().cpu()
        if (step + 1) % report_every == 0 or step + 1 == settings.steps:
            report(progress, step + 1, settings.steps, f"loss {float(trace[-1].mean()):.3f}")
    return BatchResult(tokens=search.tokens().cpu(), loss_trace=torch.stack(trace).cpu(), snapshots=snapshots)


def optimize_tokens(
    extractor: torch.nn.Module,
    codebook: torch.Tensor,
    source_tokens: torch.Tensor,
    region_mask: torch.Tensor,
    target: EditTarget,
    settings: OptimizeSettings = OptimizeSettings(),
    progress: Progress | None = None,
) -> OptimizeResult:
    """One edit: `optimize_batch` of a batch of one, seeded by `settings.seed`.

    Args:
        extractor: the information extractor f_Y (E (B x d x m x m) -> class logits); frozen, eval mode.
        codebook: C (K x d), on the extractor's device.
        source_tokens: LongTensor (m x m), the image's tokens (kept outside the region).
        region_mask: BoolTensor (m x m), True where tokens may change.
        target: the class index whose logit / log-probability is maximised, or a concept's `targets.Target`.
        settings: steps, lr, temperature schedule, alpha, init, objective, method, seed, snapshots.
        progress: called as progress(steps done, steps, info) while optimising.

    Returns:
        OptimizeResult: tokens (m x m, identical to the source outside the region), the loss of every
        step, the argmax (or snapped) tokens at `settings.snapshot_steps`, and the changed positions.

    Raises:
        CortexError: bad settings, shapes that do not match, an empty region or a target out of range.
    """
    grid = source_tokens.shape[-1]
    if source_tokens.numel() != grid * grid:
        raise CortexError(f"source tokens must be one square grid (m x m), got {tuple(source_tokens.shape)}")
    if region_mask.numel() != grid * grid:
        raise CortexError(f"region mask {tuple(region_mask.shape)} does not match the token grid {(grid, grid)}")
    source = source_tokens.reshape(1, grid, grid).long()
    batch = optimize_batch(extractor, codebook, source, region_mask.reshape(1, grid, grid).bool(), [target], [settings.seed],
                           settings, progress)
    tokens = batch.tokens[0]
    old, new = source.reshape(-1).cpu(), tokens.reshape(-1)
    changed = [(int(p), int(old[p]), int(new[p])) for p in (old != new).nonzero().flatten()]
    return OptimizeResult(tokens=tokens, loss_trace=batch.loss_trace[:, 0].tolist(),
                          snapshots={s: t[0] for s, t in batch.snapshots.items()}, changed=changed)
