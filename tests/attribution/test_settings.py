"""attribution/settings.py: one SaliencySettings, validated, with a run key that ignores what the method does not use."""

from __future__ import annotations

import pytest
import torch

from cortex_cli.attribution import SaliencySettings, field_help, key_fields
from cortex_cli.core.errors import CortexError


@pytest.mark.parametrize(
    "kwargs, message",
    [({"samples": 0}, "--samples"), ({"reduce": "min"}, "--reduce"), ({"precision": "fp8"}, "--precision"), ({"top_n": 0}, "--top-n")],
)
def test_settings_validation(kwargs, message):
    with pytest.raises(CortexError, match=message):
        SaliencySettings(**kwargs).validate()


def test_validation_checks_a_methods_own_parameters_only():
    for bad, message in (({"alpha": -0.1}, "--alpha"), ({"alpha": float("nan")}, "--alpha"), ({"chunk": 0}, "chunk")):
        with pytest.raises(CortexError, match=message):
            SaliencySettings(**bad).validate()
    # steps and baseline belong to integrated-gradients: smoothgrad ignores them, IG refuses them
    assert SaliencySettings(steps=0, baseline="nope").validate().steps == 0
    with pytest.raises(CortexError, match="--ig-steps must be >= 1, got 0"):
        SaliencySettings(method="integrated-gradients", steps=0).validate()
    with pytest.raises(CortexError, match="--ig-baseline must be one of"):
        SaliencySettings(method="integrated-gradients", baseline="nope").validate()


def test_canonical_neutralises_what_the_method_ignores_and_keeps_the_rest():
    noisy = SaliencySettings(method="gradient", samples=7, alpha=0.5, seed=3, top_n=9, steps=11, chunk=4)
    canon = noisy.canonical()
    assert (canon.samples, canon.alpha, canon.seed, canon.steps, canon.baseline) == (1, 0.0, 0, 0, "none")
    assert (canon.top_n, canon.chunk, canon.method) == (9, 4, "gradient")  # used by every method, or not a result parameter
    ig = SaliencySettings(method="integrated-gradients", steps=11, samples=7).canonical()
    assert (ig.steps, ig.baseline, ig.samples) == (11, "zeros", 1)
    assert noisy.as_dict() == noisy.run_key() and "chunk" not in noisy.run_key()


def test_field_help_is_each_fields_own_text():
    assert field_help("samples").startswith("N, noisy copies")
    assert field_help("chunk") != field_help("samples")
    assert key_fields()[0] == "samples" and "chunk" not in key_fields()


def test_noise_is_smoothgrads_and_part_of_its_run_key():
    assert SaliencySettings().noise == "philox" and SaliencySettings().run_key()["noise"] == "philox"
    assert SaliencySettings(noise="host").run_key() != SaliencySettings().run_key()  # another run
    assert SaliencySettings(method="gradient", noise="host").run_key()["noise"] == "none"  # a method without noise: neutral
    assert SaliencySettings(method="gradient", noise="bogus").validate().noise == "bogus"  # ignored, as IG's parameters are
    with pytest.raises(CortexError, match="--noise must be one of philox, host, got 'gpu'"):
        SaliencySettings(noise="gpu").validate()
    assert "philox" in field_help("noise") and "host" in field_help("noise")


def test_the_default_precision_is_bf16_on_cuda_only():
    from cortex_cli.attribution import default_precision

    assert default_precision("cpu") == "fp32" and default_precision(torch.device("cuda", 0)) == "bf16"
    assert SaliencySettings().precision == "fp32"  # the run key's stored default is unchanged


def test_saliency_settings_take_fields_and_aliases_and_refuse_unknown_ones():
    from cortex_cli.attribution.settings import saliency_settings

    cpu = saliency_settings("cpu", method="integrated-gradients", ig_steps=8, ig_baseline="codebook-mean", samples=None)
    assert (cpu.method, cpu.steps, cpu.baseline, cpu.samples, cpu.precision) == ("integrated-gradients", 8, "codebook-mean", 20, "fp32")
    assert saliency_settings("cuda").precision == "bf16"  # the device's default precision, without touching a GPU
    base = SaliencySettings(seed=7, precision="fp32")
    assert saliency_settings("cuda", base, alpha=0.5) == SaliencySettings(seed=7, precision="fp32", alpha=0.5)
    with pytest.raises(CortexError, match="unknown saliency option.*sampels; known: .*ig_steps"):
        saliency_settings("cpu", sampels=3)
    with pytest.raises(CortexError, match="--samples must be >= 1"):
        saliency_settings("cpu", samples=0)
