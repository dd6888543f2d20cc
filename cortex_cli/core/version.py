"""cortex's version, in one place: the package exports it, the atlas prints it and keys its cache by it."""

__version__ = "0.1.0"
