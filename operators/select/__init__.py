"""Selectors: pick one caption per clip from its candidates and score every candidate."""
