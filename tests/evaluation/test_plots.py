"""evaluation/plots.py: the evaluations' PNG figures, one panel per judge, drawn headless."""

from __future__ import annotations

import numpy as np
from PIL import Image

from cortex_cli.evaluation.plots import _style, bar_panels, line_panels


def _pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_line_panels_draw_one_panel_per_judge_and_the_data(tmp_path):
    curves = {"resnet": {"ce": [0.9, 0.5, 0.2], "random": [0.9, 0.85, 0.8]}, "vit": {"ce": [0.8, 0.4, 0.1], "random": [0.8, 0.8, 0.7]}}
    one = line_panels([0, 5, 40], {"resnet": curves["resnet"]}, tmp_path / "one.png", xlabel="n", ylabel="P", title="t")
    two = line_panels([0, 5, 40], curves, tmp_path / "two.png", xlabel="n", ylabel="P", title="t")
    assert two == tmp_path / "two.png"
    a, b = _pixels(one), _pixels(two)
    assert a.shape[0] == b.shape[0] and b.shape[1] > 1.8 * a.shape[1]  # a panel more, as wide again
    assert a.min() < 100 and (a == 255).mean() > 0.5  # lines on a white figure
    flat = line_panels([0, 5, 40], {"resnet": {"ce": [0.5, 0.5, 0.5], "random": [0.5, 0.5, 0.5]}}, tmp_path / "flat.png",
                       xlabel="n", ylabel="P", title="t")
    assert not np.array_equal(_pixels(flat), a)  # the picture follows the numbers


def test_bar_panels_write_a_png_per_call(tmp_path):
    bars = {"fp32 vs bf16": {"ce": [0.9, 0.8], "re": [0.7, 0.6]}}
    path = bar_panels(["resnet", "vit"], bars, tmp_path / "bars.png", ylabel="overlap", title="stability")
    pixels = _pixels(path)
    assert pixels.shape[2] == 3 and pixels.min() < 100
    lower = bar_panels(["resnet", "vit"], {"fp32 vs bf16": {"ce": [0.1, 0.1], "re": [0.1, 0.1]}}, tmp_path / "low.png",
                       ylabel="overlap", title="stability")
    assert not np.array_equal(_pixels(lower), pixels)


def test_baselines_are_drawn_apart_from_the_method():
    assert _style("random") == {"linestyle": "--", "color": "0.45"} and _style("Random (mean of 5)")["linestyle"] == "--"
    assert _style("baseline (frequency)") == {"linestyle": ":"} and _style("frequency") == {"linestyle": ":"}
    assert _style("ce") == {} and _style("ce/gradient") == {}
