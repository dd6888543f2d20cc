"""What a run explains: the class logit, a concept's union score read off the class extractor, a binary extractor's log-odds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cortex_cli.core.errors import CortexError
from cortex_cli.models.targets import BINARY, CLASS, ConceptScore, Target, union_target


class Fixed(nn.Module):
    """An 'extractor' whose logits are a fixed linear read-out of its input's mean, so gradients are known."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits * x.mean(dim=(1, 2, 3), keepdim=False)[:, None]


def test_keys_name_the_rule_and_the_sorted_members():
    assert Target().key == CLASS and Target().is_class
    t = union_target([10, 0, 7, 4])
    assert t.key == "log-prob:0,4,7,10" and t == Target("log-prob", (10, 0, 7, 4))  # the measured default
    assert union_target([4, 0], "logsumexp").key == "logsumexp:0,4"
    assert Target(BINARY).key == "binary" and not Target(BINARY).is_class
    assert union_target([3]) == Target()  # one member: simply that class's logit
    assert union_target([3, 3]) == Target()
    with pytest.raises(CortexError, match="--score must be one of"):
        union_target([1, 2], "max")
    with pytest.raises(CortexError, match="unknown concept score"):
        Target("sum", (1,))


def test_scores_are_the_logsumexp_and_the_log_probability_of_the_members():
    z = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    net = lambda x: z.expand(x.shape[0], -1)  # noqa: E731
    x = torch.zeros(1, 1, 1, 1)
    lse = ConceptScore(net, "logsumexp", [0, 2])(x)
    assert lse.shape == (1, 1) and torch.allclose(lse[0, 0], torch.log(torch.exp(z[0, 0]) + torch.exp(z[0, 2])))
    logp = ConceptScore(net, "log-prob", [0, 2])(x)
    assert torch.allclose(logp[0, 0].exp(), torch.softmax(z, -1)[0, [0, 2]].sum())
    binary = ConceptScore(lambda x: torch.tensor([[0.25, 1.5]]), BINARY)(x)
    assert torch.allclose(binary, torch.tensor([[1.25]]))
    with pytest.raises(CortexError, match="2 outputs"):
        ConceptScore(net, BINARY)(x)
    with pytest.raises(CortexError, match="beyond the extractor"):
        ConceptScore(net, "logsumexp", [0, 9])(x)


def test_log_prob_saturates_where_logsumexp_does_not():
    """Saturation: an image the extractor already calls Y with confidence leaves log P(Y|E) nearly flat (logsumexp is not)."""
    weights = torch.tensor([20.0, 18.0, -20.0])  # members 0 and 1 dominate
    net = Fixed(weights)
    x = torch.ones(1, 2, 2, 2, requires_grad=True)
    grads = {}
    for rule in ("logsumexp", "log-prob"):
        x.grad = None
        ConceptScore(net, rule, [0, 1])(x).sum().backward()
        grads[rule] = x.grad.abs().sum().item()
    assert grads["logsumexp"] > 1.0 and grads["log-prob"] < 1e-6 * grads["logsumexp"]


def test_explained_module_and_per_image_targets():
    net = nn.Linear(3, 4)
    assert Target().explained(net) is net and Target().per_image([2, 3]) == [2, 3]
    wrapped = union_target([1, 2]).explained(net)
    assert isinstance(wrapped, ConceptScore) and union_target([1, 2]).per_image([1, 2, 1]) == [0, 0, 0]
    assert wrapped(torch.zeros(5, 3)).shape == (5, 1)
