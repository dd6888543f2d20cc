"""attribution/registry.py: the methods by name, the one list settings and the CLI read."""

from __future__ import annotations

import pytest

from cortex_cli.attribution import gradient, integrated_gradients
from cortex_cli.attribution.registry import METHODS, method_named
from cortex_cli.attribution.settings import SaliencySettings
from cortex_cli.core.errors import CortexError


def test_methods_are_listed_by_their_own_names():
    assert list(METHODS) == ["smoothgrad", "gradient", "gradient-x-input", "integrated-gradients"]
    assert all(module.NAME == name for name, module in METHODS.items())
    assert method_named("gradient") is gradient and method_named("integrated-gradients") is integrated_gradients


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(CortexError, match="unknown attribution method 'occlusion'; use one of smoothgrad, gradient, gradient-x-input, integrated-gradients"):
        SaliencySettings(method="occlusion").validate()
    with pytest.raises(CortexError):
        method_named("")
