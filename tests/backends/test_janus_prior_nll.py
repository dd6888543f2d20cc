"""`JanusVQGM.prior_nll`: the per-token NLL of a grid under the unguided text-conditional prior, on the tiny Janus."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("transformers")

from cortex_cli.search import realism  # noqa: E402
from cortex_cli.backends import get_backend, janus  # noqa: E402
from cortex_cli.backends.base import SamplerSettings, image_generators  # noqa: E402
from cortex_cli.models.classnames import ClassName  # noqa: E402
from cortex_cli.core.errors import CortexError  # noqa: E402
from cortex_cli.store.registered_models import ClassInfo  # noqa: E402
from janus_helpers import build_tiny_janus  # noqa: E402

UNGUIDED_GREEDY = SamplerSettings(greedy=True, guidance=None)


@pytest.fixture(scope="module")
def vqgm(tmp_path_factory):
    snapshot = build_tiny_janus(tmp_path_factory.mktemp("janus-nll") / "tiny-janus")
    backend = get_backend("janus")
    return backend.load(backend.locate(snapshot, None, None), "cpu")


def _grids(vqgm, n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, vqgm.n_embed, (n, vqgm.grid, vqgm.grid), generator=torch.Generator().manual_seed(seed))


def _stepwise_nll(vqgm, grid: torch.Tensor, concept, monkeypatch) -> float:
    """One grid through `sample`'s own KV-cache loop (guidance off), each step fed the grid's token instead of a draw,
    summing -log softmax of the very logits that step would draw from."""
    known = grid.reshape(-1)
    logps: list[float] = []

    def feed_known(logits, generators, settings, step=0):
        n = len(logps)
        logps.append(float(logits.double().log_softmax(dim=-1)[0, known[n]]))
        return known[n].reshape(1, 1).to(logits.device)

    with monkeypatch.context() as patch:
        patch.setattr(janus, "pick_tokens", feed_known)
        fed = vqgm.sample([concept], image_generators([concept], [0]), UNGUIDED_GREEDY)
    assert torch.equal(fed.reshape(-1), known) and len(logps) == known.numel()
    return -sum(logps) / len(logps)


def test_equals_the_sampling_loop_step_by_step_without_guidance(vqgm, monkeypatch):
    grids = _grids(vqgm, 3, seed=0)
    concepts = [ClassName(0, "goldfinch"), ClassName(3, "analog clock"),
                ClassInfo(7, 4, "red tractor", (), prompt="a red tractor in a snowy field")]
    got = vqgm.prior_nll(grids, concepts)
    assert got.shape == (3,) and got.dtype == torch.float32 and got.device.type == "cpu"
    for grid, concept, value in zip(grids, concepts, got):
        assert float(value) == pytest.approx(_stepwise_nll(vqgm, grid, concept, monkeypatch), abs=1e-4)


def test_a_greedy_sample_is_likelier_than_its_tokens_shuffled(vqgm):
    concepts = [ClassName(0, "goldfinch"), ClassName(1, "water ouzel")]
    sampled = vqgm.sample(concepts, image_generators(concepts, [0, 1]), UNGUIDED_GREEDY)
    flat = sampled.reshape(2, -1)
    shuffled = torch.stack([row[torch.randperm(row.numel(), generator=torch.Generator().manual_seed(i))]
                            for i, row in enumerate(flat)])
    assert not torch.equal(shuffled, flat)
    nll_sampled, nll_shuffled = vqgm.prior_nll(sampled, concepts), vqgm.prior_nll(shuffled, concepts)
    assert (nll_sampled < nll_shuffled).all()
    assert (nll_sampled < math.log(vqgm.n_embed)).all()  # below a uniform guess


def test_the_prompt_conditions_it(vqgm):
    grid = _grids(vqgm, 1, seed=1)
    goldfinch = vqgm.prior_nll(grid, [ClassName(0, "goldfinch")])
    assert vqgm.prior_nll(grid, [ClassName(0, "analog clock")]).item() != pytest.approx(goldfinch.item(), rel=1e-6)
    # a prompt concept's text is the prompt, verbatim: the class name's template text is the same prompt
    verbatim = ClassInfo(1, 9, "anything", (), prompt="a photo of a goldfinch")
    torch.testing.assert_close(vqgm.prior_nll(grid, [verbatim]), goldfinch)
    # the class id plays no part in a text-conditional prior
    torch.testing.assert_close(vqgm.prior_nll(grid, [ClassName(3, "goldfinch")]), goldfinch)


def test_batches_of_mixed_prompt_lengths_equal_one_by_one(vqgm):
    grids = _grids(vqgm, 5, seed=2)
    concepts = [ClassName(0, "goldfinch"), ClassName(1, "water ouzel"), ClassName(0, "goldfinch"),
                ClassName(2, "black grouse"), ClassName(1, "water ouzel")]
    assert len({len(vqgm.prompt_ids(c.name)) for c in concepts}) == 3  # three groups, none padded
    batched = vqgm.prior_nll(grids, concepts)
    chunked = vqgm.prior_nll(grids, concepts, batch_size=1)
    single = torch.cat([vqgm.prior_nll(grids[i:i + 1], [c]) for i, c in enumerate(concepts)])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(chunked, single, rtol=1e-5, atol=1e-6)
    assert vqgm.prior_nll(grids.reshape(5, -1), concepts).tolist() == batched.tolist()  # B x m^2 rows too


def test_bad_inputs_are_one_line_errors(vqgm):
    grid = torch.zeros(2, vqgm.grid, vqgm.grid, dtype=torch.long)
    two = [ClassName(0, "goldfinch"), ClassName(1, "water ouzel")]
    cases = [
        (grid, two[:1], "one class per grid"),
        (torch.zeros(2, 3, 3, dtype=torch.long), two, "token grids must be"),
        (torch.zeros(vqgm.grid * vqgm.grid, dtype=torch.long), two, "token grids must be"),
        (grid + vqgm.n_embed, two, "token ids must lie"),
        (grid - 1, two, "token ids must lie"),
    ]
    for tokens, concepts, message in cases:
        with pytest.raises(CortexError, match=message) as err:
            vqgm.prior_nll(tokens, concepts)
        assert "\n" not in str(err.value)


def test_realism_scores_janus_grids_under_their_classes(vqgm):
    grids = _grids(vqgm, 2, seed=3)
    concepts = [ClassInfo(1, 0, "goldfinch", ()), ClassInfo(2, 1, "water ouzel", ())]
    got = realism.prior_nll_or_none(vqgm, grids, concepts)
    assert got == pytest.approx(vqgm.prior_nll(grids, concepts).tolist())
