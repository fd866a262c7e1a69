"""Composites: pipelines as ordered operator lists, their configuration, runners and CLI."""
