"""Table 1: top-k accuracy on known toys, and on registered extractors."""

from __future__ import annotations

import pytest
import torch

from cortex_cli.core.errors import CortexError
from cortex_cli.extractors import default_configs, test_extractors as table1, topk_accuracy, train_extractor
from extractor_helpers import learnable_tiny_model


@pytest.fixture
def learnable(store, tiny_model_files, tmp_path):
    return learnable_tiny_model(store, tiny_model_files, tmp_path)


def test_topk_accuracy_on_a_known_toy_confusion():
    # 12 classes; each row's label sits at a known rank of its logits
    ranks = [0, 0, 0, 1, 2, 3, 4, 5, 9, 10, 11, 0]  # 0 = top-1
    n, c = len(ranks), 12
    logits = torch.zeros(n, c)
    labels = torch.arange(n) % c
    for i, r in enumerate(ranks):
        order = [cl for cl in range(c) if cl != int(labels[i])]
        order.insert(r, int(labels[i]))  # order[j] gets the j-th largest logit
        for j, cl in enumerate(order):
            logits[i, cl] = float(c - j)
    acc = topk_accuracy(logits, labels)
    assert acc == {"top1": 4 / 12, "top3": 6 / 12, "top5": 8 / 12, "top10": 10 / 12}
    assert topk_accuracy(logits, labels, ks=(12,)) == {"top12": 1.0}


def test_topk_accuracy_with_fewer_classes_than_k_and_bad_shapes():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.15, 0.05]])
    labels = torch.tensor([1, 2])
    assert topk_accuracy(logits, labels) == {"top1": 0.5, "top3": 1.0, "top5": 1.0, "top10": 1.0}
    assert topk_accuracy(logits, labels, ks=(2,)) == {"top2": 0.5}  # row 2: label 2 ranks third
    with pytest.raises(ValueError, match="N x C"):
        topk_accuracy(logits, torch.tensor([1]))


def test_table1_covers_every_registered_extractor_and_matches_training_metrics(store, learnable):
    with pytest.raises(CortexError, match="run `cortex train-extractor --model tiny --arch ce` first"):
        table1(store, learnable)
    small = dict(width=8, fc_width=16, epochs=2, batch_size=8, train_per_class=6, val_per_class=2, test_per_class=4)
    for arch in ("ce", "re"):
        cfg, tc = default_configs(learnable, arch, **small)
        train_extractor(store, learnable, cfg, tc)
    scores = table1(store, learnable)
    assert [(s.name, s.arch, s.n_images) for s in scores] == [("ce", "ce", 16), ("re", "re", 16)]
    from cortex_cli.extractors import get_extractor

    for s in scores:
        assert s.accuracy == get_extractor(store, learnable, s.name).metrics["test"]
        assert s.accuracy["top1"] <= s.accuracy["top3"] <= s.accuracy["top5"] <= s.accuracy["top10"] == 1.0
        assert set(s.per_class_top1) == {"goldfinch", "water ouzel", "black grouse", "analog clock"}
