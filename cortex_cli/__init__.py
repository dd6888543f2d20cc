"""cortex: concept-oriented token explanations (CORTEX) for vector-quantised image generators."""

__version__ = "0.1.0"
