"""Token search (paper §3.4): Gumbel token selection, regions, editing, concept search, realism."""
