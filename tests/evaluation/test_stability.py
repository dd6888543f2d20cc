"""evaluation/stability.py on the tiny model: the same seed gives the same maps, another seed another."""

from __future__ import annotations

from pathlib import Path

import torch

from cortex_cli.evaluation.stability import StabilitySettings, noise_seed, run_stability


def test_stability_same_seed_same_map(store, setup, tmp_path, monkeypatch):
    from cortex_cli.evaluation import common

    model, names = setup
    settings = StabilitySettings(images_per_class=1, seeds=(0, 1), sample_counts=(2, 4), ns=(5,), default_samples=2, classes=names)
    maps: list[dict] = []
    real = common.saliency_of

    def recorded(net, vqgm, tokens, labels, keys, s, **kwargs):
        out = real(net, vqgm, tokens, labels, keys, s, **kwargs)
        maps[-1][(s.samples, s.seed, s.precision)] = out.clone()
        return out

    monkeypatch.setattr(common, "saliency_of", recorded)
    for _ in range(2):  # the same evaluation twice: every (N, seed) map again, bit for bit
        maps.append({})
        result = run_stability(store, model, settings=settings, out_dir=tmp_path)
    first, second = maps
    assert first.keys() == second.keys() and len(first) >= 4
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(first[(2, noise_seed(2, 0), "fp32")], first[(2, noise_seed(2, 1), "fp32")])  # another seed, another map
    st = result.extractors["ce"]
    # every (N, seed) map has its own noise: N=2's copies are not the first two of N=4's
    from cortex_cli.attribution import seeded_noise

    small, large = seeded_noise((2, 3, 3), [7], noise_seed(2, 0), 2), seeded_noise((2, 3, 3), [7], noise_seed(4, 0), 4)
    assert not torch.allclose(small, large[:, :2])
    assert set(st.vs_largest_n) == {"2", "4"} and set(st.rank_gap) == {"5"} and st.rank_gap["5"] >= 0
    for cells in st.across_seeds.values():
        assert 0.0 <= cells["5"] <= 1.0
    assert 0.0 <= st.fp32_vs_bf16["5"] <= 1.0
    assert Path(result.plot_path).is_file()

