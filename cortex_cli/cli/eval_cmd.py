"""Commands of cortex (see module name)."""

from .app import app  # noqa: F401
