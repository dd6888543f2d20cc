"""Token-selection optimisation (eq. 7-9) and the embedding baseline, on toy extractors."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from cortex_cli.core.errors import CortexError
from cortex_cli.extractors.architectures import ExtractorConfig, build_extractor
from cortex_cli.search.regions import Region
from cortex_cli.search.token_selection import GumbelStreams, OptimizeSettings, RegionEmbedding, TokenSelection, nearest_tokens, objective_loss, optimize_batch, optimize_tokens

K, D, M, TARGET_TOKEN = 64, 8, 8, 17


class DotExtractor(torch.nn.Module):
    """Class c's logit = scale * sum over positions of <E_pos, W_c>: class 1 is maximised by TARGET_TOKEN."""

    def __init__(self, weights: torch.Tensor, scale: float = 1.0):
        super().__init__()
        self.register_buffer("weights", weights)
        self.scale = scale

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.einsum("bdhw,cd->bc", embedding, self.weights)


@pytest.fixture
def setup():
    gen = torch.Generator().manual_seed(0)
    codebook = F.normalize(torch.randn(K, D, generator=gen), dim=1)  # unit norm: <C_k, C_t> is largest at k = t
    weights = torch.zeros(2, D)
    weights[1] = codebook[TARGET_TOKEN]
    source = torch.randint(0, K, (M, M), generator=gen)
    source[source == TARGET_TOKEN] = 0
    mask = torch.zeros(M, M, dtype=torch.bool)
    mask[2:5, 3:7] = True
    return codebook, DotExtractor(weights), source, mask


def _index(mask: torch.Tensor) -> torch.Tensor:
    return mask.reshape(1, -1).nonzero()[:, 1][None]


def test_straight_through_gradient_reaches_every_region_row_and_P_has_no_other_rows(setup):
    codebook, extractor, source, mask = setup
    sel = TokenSelection(codebook, source[None], _index(mask), "source", [0])
    assert sel.P.shape == (1, int(mask.sum()), K)  # eq. 8's mask: rows outside the region are no parameters
    objective_loss(extractor, sel.embedding(tau=1.0), [1], "logit").sum().backward()
    assert bool((sel.P.grad[0].abs().sum(dim=1) > 0).all())


@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_straight_through_gradient_has_the_soft_sample_jacobian_value(setup, tau):
    """d loss / d P of a region row = (1/tau) s * (u - <s, u>), s the soft sample, u = d loss / d onehot."""
    codebook, extractor, source, mask = setup
    sel = TokenSelection(codebook, source[None], _index(mask), "source", [3])
    objective_loss(extractor, sel.embedding(tau=tau), [1], "logit").sum().backward()
    torch.manual_seed(3)  # the edit's stream is the default generator seeded with its seed: the same Gumbel draws
    soft = F.gumbel_softmax(sel.P.detach()[0], tau=tau, hard=False)
    u = -(codebook @ extractor.weights[1])  # loss = -sum_pos <onehot_pos @ C, W_1>
    expected = soft * (u - (soft * u).sum(dim=1, keepdim=True)) / tau
    torch.testing.assert_close(sel.P.grad[0], expected, rtol=1e-4, atol=1e-6)


def test_hard_sample_embedding_is_exact_codebook_rows(setup):
    codebook, _, source, mask = setup
    sel = TokenSelection(codebook, source[None], _index(mask), "random", [1])
    emb = sel.embedding(tau=0.5)[0].flatten(1).t()  # (m^2, d)
    dist = torch.cdist(emb, codebook).min(dim=1).values
    assert dist.max() < 1e-3  # straight-through forward value is one-hot @ C (up to y_hard - y + y rounding)
    outside = ~mask.reshape(-1)
    assert torch.equal(emb[outside], codebook[source.reshape(-1)[outside]])


def test_gumbel_streams_are_per_edit_and_leave_the_global_rng_alone():
    logits = torch.zeros(3, 4, 50)
    torch.manual_seed(99)
    expected_next = torch.rand(2)
    torch.manual_seed(99)
    streams = GumbelStreams([7, 8, 7], torch.device("cpu"))
    first, second = streams.hard_sample(logits, 1.0), streams.hard_sample(logits, 1.0)
    assert torch.equal(torch.rand(2), expected_next)
    assert torch.equal(first[0], first[2]) and not torch.equal(first[0], first[1])  # same seed, same draws
    assert not torch.equal(first[0], second[0])  # a stream moves on
    torch.manual_seed(7)
    assert torch.equal(first[0], F.gumbel_softmax(logits[0], hard=True))  # F.gumbel_softmax's own draws


@pytest.mark.parametrize("method", ["token", "embedding"])
@pytest.mark.parametrize("init", ["source", "random"])
def test_positions_outside_region_never_change(setup, method, init):
    codebook, extractor, source, mask = setup
    settings = OptimizeSettings(steps=40, method=method, init=init, objective="logit", snapshot_steps=(10, 25))
    result = optimize_tokens(extractor, codebook, source, mask, 1, settings)
    for grid in [result.tokens, *result.snapshots.values()]:
        assert torch.equal(grid[~mask], source[~mask])
    assert sorted(result.snapshots) == [10, 25]
    assert len(result.loss_trace) == 40
    assert all(mask.reshape(-1)[p] for p, _, _ in result.changed)
    assert {p for p, _, _ in result.changed} == set((result.tokens != source).reshape(-1).nonzero().flatten().tolist())


@pytest.mark.parametrize("init", ["source", "random"])
@pytest.mark.parametrize("objective,scale", [("logit", 1.0), ("log-prob", 0.2)])
def test_token_selection_finds_the_known_best_token(setup, init, objective, scale):
    codebook, extractor, source, mask = setup
    extractor.scale = scale  # log-prob: keep the toy away from saturation so the gradient persists
    for seed in (0, 1):
        settings = OptimizeSettings(steps=500, tau=2.0, lr=0.1, init=init, objective=objective, seed=seed)
        result = optimize_tokens(extractor, codebook, source, mask, 1, settings)
        assert (result.tokens[mask] == TARGET_TOKEN).all()
        assert torch.equal(result.tokens[~mask], source[~mask])
        assert result.loss_trace[-1] < result.loss_trace[0]


def test_embedding_baseline_snaps_to_nearest_codebook_entries(setup):
    codebook, extractor, source, mask = setup
    emb = RegionEmbedding(codebook, source[None], _index(mask), "random", [2])
    with torch.no_grad():
        emb.vectors.copy_(torch.randn(emb.vectors.shape, generator=torch.Generator().manual_seed(5)) * 2)
    tokens = emb.tokens()[0]
    brute = [min(range(K), key=lambda k: float(((v - codebook[k]) ** 2).sum())) for v in emb.vectors.detach()[0]]
    assert tokens[mask].tolist() == brute
    assert torch.equal(tokens[~mask], source[~mask])
    assert nearest_tokens(codebook[[3, 9, 40]] + 1e-3, codebook).tolist() == [3, 9, 40]
    # end to end: -<e, C[t*]> + 0.5 ||e||^2 is minimised at e = C[t*], whose nearest entry is t*
    settings = OptimizeSettings(steps=300, method="embedding", objective="logit", alpha=0.5, lr=0.05)
    result = optimize_tokens(extractor, codebook, source, mask, 1, settings)
    assert (result.tokens[mask] == TARGET_TOKEN).all()


def test_same_seed_same_result_and_global_rng_untouched(setup):
    codebook, extractor, source, mask = setup
    settings = OptimizeSettings(steps=30, init="random", seed=11, lr=0.02)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = optimize_tokens(extractor, codebook, source, mask, 1, settings)
    assert torch.equal(torch.rand(3), expected_next)
    b = optimize_tokens(extractor, codebook, source, mask, 1, settings)
    c = optimize_tokens(extractor, codebook, source, mask, 1, OptimizeSettings(steps=30, init="random", seed=12, lr=0.02))
    assert torch.equal(a.tokens, b.tokens) and a.loss_trace == b.loss_trace
    assert a.loss_trace != c.loss_trace


def test_tau_schedule_and_progress(setup):
    s = OptimizeSettings(steps=11, tau=2.0, tau_final=0.5)
    assert s.tau_at(0) == pytest.approx(2.0) and s.tau_at(10) == pytest.approx(0.5) and s.tau_at(5) == pytest.approx(1.0)
    assert OptimizeSettings(steps=11, tau=2.0).tau_at(7) == 2.0
    codebook, extractor, source, mask = setup
    seen = []
    optimize_tokens(extractor, codebook, source, mask, 1, OptimizeSettings(steps=11, tau=2.0, tau_final=0.5), progress=lambda d, t, info: seen.append((d, t)))
    assert seen[-1] == (11, 11)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"steps": 0}, "--steps"),
        ({"steps": -5}, "--steps"),
        ({"tau": 0.0}, "--tau"),
        ({"tau_final": -1.0}, "--tau-final"),
        ({"lr": 0.0}, "--lr"),
        ({"alpha": -1.0}, "--l2-weight"),
        ({"init": "zeros"}, "--init"),
        ({"objective": "prob"}, "--objective"),
        ({"method": "pixels"}, "--space"),
        ({"steps": 5, "snapshot_steps": (9,)}, "snapshot step 9"),
    ],
)
def test_bad_settings_raise(setup, kwargs, fragment):
    codebook, extractor, source, mask = setup
    with pytest.raises(CortexError, match=fragment.replace("-", r"\-")):
        optimize_tokens(extractor, codebook, source, mask, 1, OptimizeSettings(**kwargs))


def test_bad_shapes_and_targets_raise(setup):
    codebook, extractor, source, mask = setup
    with pytest.raises(CortexError, match="empty"):
        optimize_tokens(extractor, codebook, source, torch.zeros_like(mask), 1, OptimizeSettings(steps=2))
    with pytest.raises(CortexError, match="outside the extractor's 2 classes"):
        optimize_tokens(extractor, codebook, source, mask, 5, OptimizeSettings(steps=2))
    with pytest.raises(CortexError, match="0..63"):
        optimize_tokens(extractor, codebook, source + K, mask, 1, OptimizeSettings(steps=2))


# -- the batch: each edit is its own optimisation ----------------------------------------------

def _small_ce() -> torch.nn.Module:
    cfg = ExtractorConfig(arch="ce", in_channels=8, grid=8, width=4, n_classes=3, fc_width=8, dropout=0.0)
    torch.manual_seed(0)
    net = build_extractor(cfg).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


@pytest.mark.parametrize("method,init", [("token", "source"), ("token", "random"), ("embedding", "source"), ("embedding", "random")])
def test_optimize_batch_is_optimize_tokens_per_edit(method, init):
    """Batch composition never matters: each edit gets what it gets alone (same seed, same tokens)."""
    net, codebook = _small_ce(), torch.randn(16, 8, generator=torch.Generator().manual_seed(2))
    sources = torch.randint(0, 16, (3, 8, 8), generator=torch.Generator().manual_seed(1))
    regions = [Region((0, 2), (0, 2)), Region((3, 5), (4, 6)), Region((6, 8), (6, 8))]
    targets, seeds = [1, 2, 0], [5, 2**62 + 3, 11]
    st = OptimizeSettings(steps=25, method=method, init=init, lr=0.5 if method == "token" else None, snapshot_steps=(10,))
    batched = optimize_batch(net, codebook, sources, torch.stack([r.mask(8) for r in regions]), targets, seeds, st)
    assert batched.tokens.shape == (3, 8, 8) and batched.loss_trace.shape == (25, 3) and batched.snapshots[10].shape == (3, 8, 8)
    for i, r in enumerate(regions):
        single = optimize_tokens(net, codebook, sources[i], r.mask(8), targets[i], dataclasses.replace(st, seed=seeds[i]))
        assert torch.equal(batched.tokens[i], single.tokens) and torch.equal(batched.snapshots[10][i], single.snapshots[10])
        torch.testing.assert_close(batched.loss_trace[:, i], torch.tensor(single.loss_trace))
    assert (batched.tokens != sources).any()  # the comparison is not vacuous


def test_optimize_batch_refuses_ragged_batches(setup):
    codebook, extractor, source, mask = setup
    other = torch.zeros_like(mask)
    other[0, :3] = True  # 3 positions where `mask` has 12
    with pytest.raises(CortexError, match="equally many positions"):
        optimize_batch(extractor, codebook, torch.stack([source, source]), torch.stack([mask, other]), [1, 1], [0, 1], OptimizeSettings(steps=2))
    with pytest.raises(CortexError, match="one source, region, target and seed per edit"):
        optimize_batch(extractor, codebook, torch.stack([source, source]), torch.stack([mask, mask]), [1], [0, 1], OptimizeSettings(steps=2))
    with pytest.raises(CortexError, match="target class 7"):
        optimize_batch(extractor, codebook, torch.stack([source, source]), torch.stack([mask, mask]), [1, 7], [0, 1], OptimizeSettings(steps=2))


def test_an_extractor_returning_a_logits_tuple_is_optimised_the_same(setup):
    codebook, extractor, source, mask = setup

    class TupleOut(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, embedding):
            return self.net(embedding), embedding.mean()  # (logits, an auxiliary output)

    settings = OptimizeSettings(steps=30, init="random", seed=4)
    plain = optimize_tokens(extractor, codebook, source, mask, 1, settings)
    wrapped = optimize_tokens(TupleOut(extractor), codebook, source, mask, 1, settings)
    assert torch.equal(plain.tokens, wrapped.tokens) and plain.loss_trace == wrapped.loss_trace


def test_a_concept_objective_is_its_members_logsumexp_or_summed_log_probability(setup):
    from cortex_cli.models.targets import BINARY, Target
    from cortex_cli.search.token_selection import concept_objective

    logits = torch.tensor([[1.0, 3.0, -2.0, 0.5], [0.0, -1.0, 2.0, 2.0]])
    union = Target("logsumexp", (1, 3))
    assert torch.allclose(concept_objective(logits, union, "logit"), torch.log(logits[:, [1, 3]].exp().sum(1)))
    summed = F.softmax(logits, dim=1)[:, [1, 3]].sum(1)
    assert torch.allclose(concept_objective(logits, union, "log-prob"), summed.log())
    two = torch.tensor([[0.5, 2.0]])
    assert torch.allclose(concept_objective(two, Target(BINARY), "logit"), torch.tensor([1.5]))
    assert torch.allclose(concept_objective(two, Target(BINARY), "log-prob"), F.log_softmax(two, dim=1)[:, 1])
    with pytest.raises(CortexError, match="2 outputs"):
        concept_objective(logits, Target(BINARY), "logit")
    # a batch mixing a class and a concept: each edit its own objective, the class exactly as before
    codebook, extractor, source, mask = setup
    emb = F.embedding(source[None].repeat(2, 1, 1), codebook).permute(0, 3, 1, 2)
    mixed = objective_loss(extractor, emb, [1, Target("logsumexp", (0, 1))], "logit")
    plain = objective_loss(extractor, emb, [1, 1], "logit")
    assert mixed[0] == plain[0] and torch.allclose(mixed[1], -torch.logsumexp(extractor(emb)[1], dim=0))


def test_optimising_a_concept_raises_its_score_and_checks_its_members(setup):
    from cortex_cli.models.targets import Target

    codebook, extractor, source, mask = setup
    weights = torch.zeros(3, D)
    weights[1], weights[2] = codebook[TARGET_TOKEN], -codebook[TARGET_TOKEN]  # class 2 pulls the other way
    three = DotExtractor(weights)
    concept = Target("logsumexp", (0, 1))
    settings = OptimizeSettings(steps=40, seed=2)
    result = optimize_tokens(three, codebook, source, mask, concept, settings)

    def score(grid):
        return float(torch.logsumexp(three(F.embedding(grid[None], codebook).permute(0, 3, 1, 2))[0, [0, 1]], dim=0))

    assert score(result.tokens) > score(source) + 0.1 and result.changed
    assert result.loss_trace[-1] < result.loss_trace[0]
    with pytest.raises(CortexError, match="target class 5 is outside the extractor's 3 classes"):
        optimize_tokens(three, codebook, source, mask, Target("logsumexp", (1, 5)), OptimizeSettings(steps=2))


def test_optimize_settings_take_fields_and_the_space_alias_and_refuse_unknown_ones():
    from cortex_cli.search.token_selection import OptimizeSettings, optimize_settings

    got = optimize_settings(space="embedding", steps=5, alpha=None, objective=None)
    assert got == OptimizeSettings(method="embedding", steps=5)
    assert optimize_settings(OptimizeSettings(steps=9), tau=0.5) == OptimizeSettings(steps=9, tau=0.5)
    with pytest.raises(CortexError, match="unknown optimiser option.*stpes; known: .*space"):
        optimize_settings(stpes=3)
    with pytest.raises(CortexError, match="--steps must be a positive"):
        optimize_settings(steps=0)
