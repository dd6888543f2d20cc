"""Shared leaves: errors, progress, JSON values, results, environment, torchrun, seeds, random streams, weights."""
