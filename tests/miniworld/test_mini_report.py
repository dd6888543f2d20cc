"""miniworld/report.py: the mini model's quality figures, measured on the tiny model with judges whose accuracy is known."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cortex_cli.models import registry as model_registry
from cortex_cli.backends.base import SamplerSettings
from cortex_cli.judges.pixel_judges import Judge
from cortex_cli.miniworld import world
from cortex_cli.images.generation import default_sampler
from cortex_cli.miniworld import mini_report as mini_report_module
from cortex_cli.miniworld.mini_report import mini_report, report_mini
from cortex_cli.models.configs import net2net_config, write_config
from cortex_cli.store.database import open_store


class Always(nn.Module):
    """Predicts one class whatever the picture."""

    def __init__(self, answer: int):
        super().__init__()
        self.answer = answer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(torch.full((len(x),), self.answer), len(world.CONCEPTS)).float()


@pytest.fixture(scope="module")
def world_sized_model(tmp_path_factory):
    """A random-init taming model with one class per mini-world concept: 64 px, 8x8 tokens (few sampling steps), K=64."""
    from cortex_cli.backends.taming import build_net

    root = tmp_path_factory.mktemp("world-sized")
    cfg = net2net_config(n_classes=len(world.CONCEPTS), n_embed=64, embed_dim=16, ch=32, ch_mult=(1, 1, 1, 1), z_channels=16,
                         n_layer=1, n_head=2, n_embd=32)
    torch.manual_seed(0)
    torch.save({"state_dict": build_net(cfg).state_dict()}, root / "last.ckpt")
    store = open_store(f"sqlite:///{root / 'db.sqlite'}")
    labels = root / "labels.tsv"
    labels.write_text("".join(f"{i}\t{c.name}\n" for i, c in enumerate(world.CONCEPTS)))
    model = model_registry.add_model(store, "world", write_config(cfg, root / "config.yaml"), root / "last.ckpt", str(labels))
    yield model_registry.load_model(model)
    store.close()


def test_report_counts_judges_codebook_and_bars(world_sized_model):
    vqgm = world_sized_model
    judges = [Judge("zero", Always(0), lambda x: x), Judge("two", Always(2), lambda x: x)]
    seen: list[tuple[int, int]] = []
    report = mini_report(vqgm, judges, heldout_per_concept=2, generated_per_concept=1, sampler=SamplerSettings(greedy=True),
                         progress=lambda done, total, info="": seen.append((done, total)))
    n = len(world.CONCEPTS)
    assert report.heldout_images == 2 * n and report.generated_per_concept == 1 and report.sampler == "greedy,noise=philox"
    # a judge that always answers class c is right on exactly the held-out images and samples of concept c
    assert report.judge_heldout_accuracy == pytest.approx({"zero": 1 / n, "two": 1 / n})
    zero = report.judge_generated_accuracy["zero"]
    assert list(zero) == [c.name for c in world.CONCEPTS]
    assert zero[world.CONCEPTS[0].name] == 1.0 and sum(zero.values()) == 1.0
    assert report.judge_generated_accuracy["two"][world.CONCEPTS[2].name] == 1.0
    assert report.judge_generated_mean == pytest.approx({"zero": 1 / n, "two": 1 / n})
    assert report.bars == {"judge zero held-out >= 0.95": False, "judge two held-out >= 0.95": False,
                           "judge zero generated mean >= 0.85": False, "judge two generated mean >= 0.85": False}
    assert report.codebook_size == 64 and 1 <= report.codebook_used <= 64
    assert 1.0 <= report.perplexity <= report.codebook_used + 1e-6  # exp(entropy) of the codes used
    assert report.psnr_db > 0
    assert seen[-1] == (n, n)


def test_report_mini_measures_the_registered_mini_model_with_its_judges_and_sampler(monkeypatch, tmp_path):
    seen = {}

    def measure(vqgm, judges, **options):
        seen.update(vqgm=vqgm, judges=[j.name for j in judges], **options)
        return "report"

    monkeypatch.setattr(mini_report_module, "mini_report", measure)
    store = open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    model_registry.ensure_bundled(store)
    try:
        assert report_mini(store, "cpu", heldout_per_concept=3, seed=2) == "report"
        mini = model_registry.load_model(model_registry.get_model(store, model_registry.MINI_NAME), "cpu")
        assert seen["vqgm"] is mini and seen["judges"] == ["resnet", "vit"] and seen["sampler"] == default_sampler(mini)
        assert (seen["heldout_per_concept"], seen["generated_per_concept"], seen["seed"], seen["progress"]) == (3, 16, 2, None)
    finally:
        store.close()
