"""Bundled pipeline configurations (YAML)."""
