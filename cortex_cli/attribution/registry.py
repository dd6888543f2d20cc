"""The attribution methods by name: adding one is its module and one entry here (captum/attr's layout)."""

from __future__ import annotations

from types import ModuleType

from ..core.errors import CortexError
from . import gradient, gradient_x_input, integrated_gradients, smoothgrad

METHODS: dict[str, ModuleType] = {m.NAME: m for m in (smoothgrad, gradient, gradient_x_input, integrated_gradients)}


def method_named(name: str) -> ModuleType:
    """The module of attribution method `name`; CortexError listing the known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise CortexError(f"unknown attribution method {name!r}; use one of {', '.join(METHODS)}") from None
