"""cortex: concept-oriented token explanations (CORTEX) for vector-quantised image generators.

The Python API is `Workspace` (see `cortex_cli.api`); every library error is a `CortexError`.

    from cortex_cli import Workspace
    ws = Workspace()
    ws.index("red-capped bird", images=20)
    print(ws.top_tokens("red-capped bird", k=10, baseline="frequency").to_pandas())
"""

from typing import Any

from .core.version import __version__

__all__ = ["CortexError", "Workspace", "__version__"]


def __getattr__(name: str) -> Any:
    """`Workspace` and `CortexError` on first use, so `import cortex_cli` stays cheap (no torch)."""
    if name == "Workspace":
        from .api import Workspace

        return Workspace
    if name == "CortexError":
        from .core.errors import CortexError

        return CortexError
    raise AttributeError(f"module 'cortex_cli' has no attribute {name!r}")
