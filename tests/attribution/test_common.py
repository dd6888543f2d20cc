"""attribution.common: the precision of the forward pass."""

from __future__ import annotations

import torch

from cortex_cli.attribution.common import autocast


def test_fp32_on_cuda_turns_tf32_convolutions_off_and_restores_the_setting():
    """TF32 moved fp32 saliency by up to 17% of its maximum on an H200 (tests/test_cuda.py); fp32 must mean fp32."""
    cudnn = torch.backends.cudnn
    before = cudnn.allow_tf32
    try:
        cudnn.allow_tf32 = True  # PyTorch's default
        with autocast(torch.device("cuda"), "fp32"):
            assert cudnn.allow_tf32 is False
        assert cudnn.allow_tf32 is True
        with autocast(torch.device("cpu"), "fp32"):
            assert cudnn.allow_tf32 is True  # the CPU has no TF32 to turn off
    finally:
        cudnn.allow_tf32 = before


def test_bf16_autocasts_the_forward_pass():
    with autocast(torch.device("cpu"), "bf16"):
        out = torch.nn.functional.linear(torch.ones(2, 3), torch.ones(4, 3))
    assert out.dtype == torch.bfloat16
