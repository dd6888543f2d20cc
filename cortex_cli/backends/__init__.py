"""Generator backends: one module per VQGM library (`taming`, ...), each the only importer of its library."""
