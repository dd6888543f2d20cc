"""Generator backends: one module per VQGM library, each the only importer of its library.

A backend registers under a name in the entry-point group `cortex.backends` (cortex declares its
own, `taming` and `janus`, in pyproject.toml), so another package adds one by declaring

    [project.entry-points."cortex.backends"]
    mygen = "mypackage.cortex_backend:BACKEND"

where `BACKEND` satisfies `backends.base.Backend`. The `models` table records each model's backend.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from ..core.errors import CortexError, first_line
from .base import Backend, ModelFiles, ModelShape, SamplerSettings, VQGM

GROUP = "cortex.backends"
DEFAULT = "taming"

__all__ = ["DEFAULT", "GROUP", "Backend", "ModelFiles", "ModelShape", "SamplerSettings", "VQGM", "get_backend", "known_backends"]

_LOADED: dict[str, Backend] = {}


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def known_backends() -> list[str]:
    """Names of every installed backend, sorted."""
    return sorted(_entry_points())


def get_backend(name: str) -> Backend:
    """The backend registered as `name` (loaded once per process).

    Raises:
        CortexError: no installed package registers `name`, or its entry point does not load.
    """
    if name in _LOADED:
        return _LOADED[name]
    found = _entry_points()
    if name not in found:
        known = ", ".join(sorted(found)) or "none; reinstall cortex (pip install -e .) to register its own"
        raise CortexError(f"unknown backend {name!r} (known: {known})")
    try:
        backend = found[name].load()
    except Exception as exc:  # a third-party package that is broken or half-installed
        raise CortexError(f"backend {name!r} ({found[name].value}) does not load: {first_line(exc)}") from exc
    if getattr(backend, "name", None) != name:
        raise CortexError(f"entry point {name!r} of {GROUP} gives {found[name].value}, which is not a cortex backend named {name!r}")
    _LOADED[name] = backend
    return backend
