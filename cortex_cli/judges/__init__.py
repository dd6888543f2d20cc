"""Independent judges: pixel classifiers that score decoded images."""
