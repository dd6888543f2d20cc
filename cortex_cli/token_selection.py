"""Optimisation-based token explanation (paper §3.4, eq. 7-9, appendix A.2) and its embedding baseline.

Token selection: a matrix P (m^2 x K) of logits; every step draws hard Gumbel-Softmax samples of the
region's rows (straight-through gradients), builds E = onehot · C (eq. 7) with the rows outside the
region pinned to the source tokens, and takes an Adam step on P with the gradient masked to the
region (eq. 8). The result is the argmax of P in the region (eq. 9).

Embedding baseline: optimise the region's d-dimensional embedding directly with the same loss and
steps, then snap every vector to its nearest codebook entry (Euclidean vector quantisation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .errors import CortexError
from .extractors.subsets import require_classes
from .progress import Progress, report

INITS = ("source", "random")
OBJECTIVES = ("logit", "log-prob")
METHODS = ("token", "embedding")
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
    """How `optimize_tokens` searches; defaults are the ones `cortex edit` uses."""

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
            raise CortexError(f"--alpha must be >= 0, got {self.alpha}")
        for name, value, allowed in (("init", self.init, INITS), ("objective", self.objective, OBJECTIVES), ("method", self.method, METHODS)):
            if value not in allowed:
                raise CortexError(f"--{name} {value!r} is not one of {', '.join(allowed)}")
        bad = [s for s in self.snapshot_steps if not 1 <= s <= self.steps]
        if bad:
            raise CortexError(f"snapshot step {bad[0]} is outside 1..{self.steps}")
        return self

    def tau_at(self, step: int) -> float:
        """Temperature at 0-based `step` (exponential schedule when tau_final is set)."""
        if self.tau_final is None or self.steps <= 1:
            return self.tau
        return self.tau * (self.tau_final / self.tau) ** (step / (self.steps - 1))


@dataclass
class OptimizeResult:
    """The optimised token grid and how it got there."""

    tokens: torch.Tensor  # LongTensor (m x m): source outside the region, eq. 9 inside
    loss_trace: list[float]  # loss of every step
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)  # step -> tokens (m x m)
    changed: list[tuple[int, int, int]] = field(default_factory=list)  # (position, old, new)


def _logits(output: torch.Tensor | tuple) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def objective_loss(extractor: torch.nn.Module, embedding: torch.Tensor, target: int, objective: str) -> torch.Tensor:
    """-f_Y(E)[target] ('logit') or -log softmax(f_Y(E))[target] ('log-prob'), for E (1 x d x m x m)."""
    logits = _logits(extractor(embedding))[0].float()
    if objective == "logit":
        return -logits[target]
    return -F.log_softmax(logits, dim=-1)[target]


class TokenSelection(torch.nn.Module):
    """The token selection matrix P (m^2 x K) with the source tokens pinned outside the region."""

    def __init__(self, codebook: torch.Tensor, source_tokens: torch.Tensor, region_mask: torch.Tensor, init: str, generator: torch.Generator):
        super().__init__()
        n_embed = codebook.shape[0]
        self.grid = source_tokens.shape[-1]
        self.register_buffer("codebook", codebook.detach())
        self.register_buffer("source", source_tokens.reshape(-1).long())
        self.register_buffer("mask", region_mask.reshape(-1).bool())
        self.register_buffer("index", self.mask.nonzero().squeeze(1))
        if init == "random":
            logits = torch.randn(self.source.numel(), n_embed, generator=generator) * RANDOM_INIT_STD
        else:
            logits = torch.zeros(self.source.numel(), n_embed)
        gap = math.log(SOURCE_INIT_PROB / (1 - SOURCE_INIT_PROB) * max(n_embed - 1, 1))
        pinned = ~self.mask.cpu() if init == "random" else torch.ones_like(self.mask.cpu())
        rows = torch.arange(self.source.numel())[pinned]
        logits[rows, self.source.cpu()[pinned]] = gap
        self.P = torch.nn.Parameter(logits.to(codebook.device))

    def embedding(self, tau: float) -> torch.Tensor:
        """E (1 x d x m x m) from a hard Gumbel-Softmax sample of the region rows (eq. 7)."""
        onehot = F.gumbel_softmax(self.P[self.index], tau=tau, hard=True)
        flat = self.codebook[self.source].clone()  # pinned rows: exactly onehot(source) · C
        flat = flat.index_copy(0, self.index, onehot @ self.codebook)
        return flat.t().reshape(1, -1, self.grid, self.grid)

    def tokens(self) -> torch.Tensor:
        """Eq. 9: argmax of P inside the region, the source outside (m x m)."""
        out = self.source.clone()
        out[self.index] = self.P.detach()[self.index].argmax(dim=-1)
        return out.reshape(self.grid, self.grid)

    def mask_gradient(self) -> None:
        """Eq. 8: zero the gradient of P outside the region (the Hadamard product with M_mask)."""
        if self.P.grad is not None:
            self.P.grad.mul_(self.mask[:, None].to(self.P.grad.dtype))


def nearest_tokens(vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Nearest codebook entry (Euclidean) of every row of `vectors` (n x d) -> LongTensor (n)."""
    return torch.cdist(vectors.float(), codebook.float()).argmin(dim=-1)


class RegionEmbedding(torch.nn.Module):
    """The baseline: the region's embedding vectors as free parameters; the rest is the source's E."""

    def __init__(self, codebook: torch.Tensor, source_tokens: torch.Tensor, region_mask: torch.Tensor, init: str, generator: torch.Generator):
        super().__init__()
        self.grid = source_tokens.shape[-1]
        self.register_buffer("codebook", codebook.detach())
        self.register_buffer("source", source_tokens.reshape(-1).long())
        self.register_buffer("index", region_mask.reshape(-1).bool().nonzero().squeeze(1))
        if init == "random":
            scale, centre = self.codebook.std(dim=0), self.codebook.mean(dim=0)
            start = centre + scale * torch.randn(len(self.index), codebook.shape[1], generator=generator).to(codebook.device)
        else:
            start = self.codebook[self.source[self.index]].clone()
        self.vectors = torch.nn.Parameter(start)

    def embedding(self, tau: float = 1.0) -> torch.Tensor:
        flat = self.codebook[self.source].index_copy(0, self.index, self.vectors)
        return flat.t().reshape(1, -1, self.grid, self.grid)

    def tokens(self) -> torch.Tensor:
        out = self.source.clone()
        out[self.index] = nearest_tokens(self.vectors.detach(), self.codebook)
        return out.reshape(self.grid, self.grid)

    def mask_gradient(self) -> None:  # only region vectors are parameters
        pass


def optimize_tokens(
    extractor: torch.nn.Module,
    codebook: torch.Tensor,
    source_tokens: torch.Tensor,
    region_mask: torch.Tensor,
    target: int,
    settings: OptimizeSettings = OptimizeSettings(),
    progress: Progress | None = None,
) -> OptimizeResult:
    """Search the codebook for the tokens of a region that make the extractor predict `target`.

    Args:
        extractor: the information extractor f_Y (E (B x d x m x m) -> class logits); frozen, eval mode.
        codebook: C (K x d), on the extractor's device.
        source_tokens: LongTensor (m x m), the image's tokens (kept outside the region).
        region_mask: BoolTensor (m x m), True where tokens may change.
        target: the class index whose logit / log-probability is maximised.
        settings: steps, lr, temperature schedule, alpha, init, objective, method, seed, snapshots.
        progress: called as progress(steps done, steps, info) while optimising.

    Returns:
        OptimizeResult: tokens (m x m, identical to the source outside the region), the loss of every
        step, the argmax (or snapped) tokens at `settings.snapshot_steps`, and the changed positions.

    Raises:
        CortexError: bad settings, shapes that do not match, an empty region or a target out of range.
    """
    settings.validate()
    grid = source_tokens.shape[-1]
    source_tokens = source_tokens.reshape(grid, grid).long()
    region_mask = region_mask.reshape(grid, grid).bool()
    if source_tokens.shape != region_mask.shape:
        raise CortexError(f"region mask {tuple(region_mask.shape)} does not match the token grid {tuple(source_tokens.shape)}")
    if not region_mask.any():
        raise CortexError("the region is empty; give at least one token position")
    n_embed = codebook.shape[0]
    if int(source_tokens.min()) < 0 or int(source_tokens.max()) >= n_embed:
        raise CortexError(f"source tokens must lie in 0..{n_embed - 1} (the codebook size is {n_embed})")
    device = codebook.device
    with torch.no_grad():
        n_classes = _logits(extractor(F.embedding(source_tokens.to(device)[None], codebook).permute(0, 3, 1, 2))).shape[-1]
    if not 0 <= target < n_classes:
        raise CortexError(f"target class {target} is outside the extractor's {n_classes} classes")
    require_classes(extractor, [target])

    generator = torch.Generator().manual_seed(settings.seed)
    devices = [device.index or 0] if device.type == "cuda" else []
    # gumbel_softmax draws from the global RNG; fork it so the caller's random state is untouched
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(settings.seed)
        if settings.method == "token":
            search: torch.nn.Module = TokenSelection(codebook, source_tokens.to(device), region_mask.to(device), settings.init, generator)
            lr = settings.lr if settings.lr is not None else TOKEN_LR
            params = [search.P]
        else:
            search = RegionEmbedding(codebook, source_tokens.to(device), region_mask.to(device), settings.init, generator)
            lr = settings.lr if settings.lr is not None else EMBEDDING_LR * float(codebook.detach().std())
            params = [search.vectors]
        optimizer = torch.optim.Adam(params, lr=lr)
        index = region_mask.reshape(-1).nonzero().squeeze(1).to(device)
        trace: list[float] = []
        snapshots: dict[int, torch.Tensor] = {}
        wanted = set(settings.snapshot_steps)
        report_every = max(1, settings.steps // 100)
        for step in range(settings.steps):
            optimizer.zero_grad(set_to_none=True)
            embedding = search.embedding(settings.tau_at(step))
            loss = objective_loss(extractor, embedding, target, settings.objective)
            if settings.alpha:
                # the region is all that can change: the rest of ||E||^2 is a constant
                region = embedding.flatten(2)[0][:, index]
                loss = loss + settings.alpha * region.pow(2).sum()
            loss.backward()
            search.mask_gradient()
            optimizer.step()
            trace.append(float(loss.detach()))
            if step + 1 in wanted:
                snapshots[step + 1] = search.tokens().cpu()
            if (step + 1) % report_every == 0 or step + 1 == settings.steps:
                report(progress, step + 1, settings.steps, f"loss {trace[-1]:.3f}")
    tokens = search.tokens().cpu()
    old, new = source_tokens.reshape(-1).cpu(), tokens.reshape(-1)
    changed = [(int(p), int(old[p]), int(new[p])) for p in (old != new).nonzero().flatten()]
    return OptimizeResult(tokens=tokens, loss_trace=trace, snapshots=snapshots, changed=changed)
