"""`TamingVQGM.prior_nll`: the per-token NLL of a grid under the GPT prior, teacher-forced as it samples."""

import contextlib
import io
import math

import pytest
import torch

from cortex_cli.backends.base import SamplerSettings, image_streams
from cortex_cli.backends.taming import load_vqgm
from cortex_cli.models.classnames import ClassName
from cortex_cli.core.errors import CortexError


@pytest.fixture(scope="module")
def vqgm(tiny_model_files):
    config, ckpt, _ = tiny_model_files
    with contextlib.redirect_stdout(io.StringIO()):
        return load_vqgm(config, ckpt)


def _classes(*class_ids):
    return [ClassName(c, f"class {c}") for c in class_ids]


def _sample(vqgm, classes, seeds, settings):
    return vqgm.sample(classes, image_streams(settings, "tiny", classes, ["train"] * len(classes), list(seeds)), settings)


def _reference(vqgm, grid: torch.Tensor, class_id: int) -> float:
    """One grid, step by step: the GPT's next-token distribution after the class token(s) and tokens < i."""
    gpt = vqgm.net.transformer
    _, cond = vqgm.net.encode_to_c(torch.tensor([[class_id]]))
    seq = vqgm.net.permuter(grid.reshape(1, -1))
    total = 0.0
    with torch.no_grad():
        for i in range(seq.shape[1]):
            context = torch.cat((cond, seq[:, :i]), dim=1)
            logits, _ = gpt(context)
            probs = torch.softmax(logits[0, -1, : vqgm.n_embed].double(), dim=-1)
            total -= math.log(probs[seq[0, i]].item())
    return total / seq.shape[1]



def test_sampled_grids_are_likelier_than_random_ones(vqgm):
    classes = _classes(0, 1, 2, 3, 0, 1)
    sampled = _sample(vqgm, classes, range(6), SamplerSettings(top_k=None, temperature=0.7))
    random = torch.randint(0, vqgm.n_embed, sampled.shape, generator=torch.Generator().manual_seed(1))
    nll_sampled, nll_random = vqgm.prior_nll(sampled, classes), vqgm.prior_nll(random, classes)
    assert nll_sampled.shape == (6,) and nll_sampled.dtype == torch.float32
    assert nll_sampled.mean() < nll_random.mean()
    # a uniform guess costs log K per token; what the model samples at low temperature costs less
    assert nll_sampled.mean() < torch.log(torch.tensor(float(vqgm.n_embed)))


def test_equals_a_step_by_step_computation(vqgm):
    grid = torch.randint(0, vqgm.n_embed, (1, vqgm.grid, vqgm.grid), generator=torch.Generator().manual_seed(2))
    got = vqgm.prior_nll(grid, _classes(3))
    assert got.item() == pytest.approx(_reference(vqgm, grid[0], 3), rel=1e-4)
    # the class matters: the same grid under another class scores differently
    assert vqgm.prior_nll(grid, _classes(0)).item() != pytest.approx(got.item(), rel=1e-6)


def test_batch_equals_one_by_one(vqgm):
    grids = torch.randint(0, vqgm.n_embed, (5, vqgm.grid, vqgm.grid), generator=torch.Generator().manual_seed(3))
    classes = _classes(0, 3, 1, 2, 3)
    batched = vqgm.prior_nll(grids, classes)
    chunked = vqgm.prior_nll(grids, classes, batch_size=2)
    single = torch.cat([vqgm.prior_nll(grids[i:i + 1], [c]) for i, c in enumerate(classes)])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(chunked, single, rtol=1e-5, atol=1e-6)


def test_bad_inputs_are_one_line_errors(vqgm):
    grid = torch.zeros(2, vqgm.grid, vqgm.grid, dtype=torch.long)
    with pytest.raises(CortexError, match="one class per grid"):
        vqgm.prior_nll(grid, _classes(0))
    with pytest.raises(CortexError, match="outside this model's 4 classes"):
        vqgm.prior_nll(grid, _classes(0, 9))
    with pytest.raises(CortexError, match="token ids must lie"):
        vqgm.prior_nll(grid + vqgm.n_embed, _classes(0, 1))
    with pytest.raises(CortexError, match="token grids must be"):
        vqgm.prior_nll(torch.zeros(2, 3, 3, dtype=torch.long), _classes(0, 1))


def test_the_class_is_read_from_the_concept_not_its_name(vqgm):
    grid = torch.randint(0, vqgm.n_embed, (1, vqgm.grid, vqgm.grid), generator=torch.Generator().manual_seed(4))
    renamed = vqgm.prior_nll(grid, [ClassName(2, "any other name")])
    torch.testing.assert_close(renamed, vqgm.prior_nll(grid, _classes(2)), rtol=0, atol=0)
