"""ImageNet judges: found offline under torchvision's file names, or a clear error."""

from __future__ import annotations

import pytest
import torch
import torchvision

from cortex_cli.core.errors import CortexError
from cortex_cli.judges.pixel_judges import Judge, imagenet_judges, imagenet_weight_files, judge_probabilities, judges_or_notice


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return tmp_path


def test_missing_weights_error_names_every_file(empty_hub):
    with pytest.raises(CortexError) as err:
        imagenet_judges("cpu", weights_dir=empty_hub / "none")
    msg = str(err.value)
    for fname in ("resnet18-f37072fd.pth", "resnet50-0676ba61.pth", "vit_b_16-c867db91.pth", "vit_b_32-d86f8d99.pth"):
        assert fname in msg
    assert "--judge-weights" in msg and "\n" not in msg


def test_judge_loads_from_weights_dir_and_resizes_like_torchvision(empty_hub):
    wdir = empty_hub / "weights"
    wdir.mkdir()
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    torch.save(net.state_dict(), wdir / imagenet_weight_files(("resnet18",))["resnet18"])
    (judge,) = imagenet_judges("cpu", weights_dir=wdir, names=("resnet18",))
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    x = judge.preprocess(images)
    assert x.shape == (2, 3, 224, 224)  # resize 256 then centre crop 224, as the weights' transforms
    probs = judge.probabilities(images)
    assert probs.shape == (2, 1000) and torch.allclose(probs.sum(-1), torch.ones(2), atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(probs, net(x).softmax(-1), atol=1e-5)


def test_wrong_file_under_the_right_name_is_reported(empty_hub):
    wdir = empty_hub / "weights"
    wdir.mkdir()
    torch.save({"nonsense": torch.zeros(1)}, wdir / "resnet18-f37072fd.pth")
    with pytest.raises(CortexError, match="do not load into resnet18"):
        imagenet_judges("cpu", weights_dir=wdir, names=("resnet18",))


def test_judges_or_notice_says_why_there_are_none_and_probabilities_are_per_judge(empty_hub, tiny_model):
    notices: list[str] = []
    assert judges_or_notice(tiny_model, "cpu", notices) == []  # the tiny model's labels are neither mini nor ImageNet
    assert len(notices) == 1 and notices[0].startswith("no judge scores: no judges known for model 'tiny'")
    gen = torch.Generator().manual_seed(0)
    judges = [Judge(f"j{i}", torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).eval(), lambda x: x) for i in range(2)]
    for j in judges:
        torch.nn.init.normal_(j.model[1].weight, generator=gen)
    images = torch.rand(5, 3, 2, 2, generator=gen) * 2 - 1
    probs = judge_probabilities(judges, images)
    assert list(probs) == ["j0", "j1"] and all(p.shape == (5, 3) and p.device.type == "cpu" for p in probs.values())
    with torch.no_grad():
        torch.testing.assert_close(probs["j1"], judges[1].model(images).softmax(-1))
    assert not torch.equal(probs["j0"], probs["j1"])


def test_a_concepts_probability_is_the_sum_of_its_members():
    from cortex_cli.judges.pixel_judges import target_probability

    probs = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]])
    assert torch.equal(target_probability(probs, [2]), probs[:, 2])  # one class: exactly its probability
    assert torch.allclose(target_probability(probs, [3, 1, 3]), torch.tensor([0.6, 0.2]))  # members once each
    assert target_probability(probs, [1, 4]) is None and target_probability(probs, []) is None
