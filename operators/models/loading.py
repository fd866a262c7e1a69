"""Shared rules for naming models in configs.

A model reference is one of:
  ``bundled:<name>``   a model shipped inside a Python package (works offline),
  a local folder       loaded from disk,
  a hub id             ``org/name``, downloaded by the library on first use.
"""
from __future__ import annotations

import importlib
import os

from vidcurate.operators.base import OperatorSetupError

BUNDLED_PREFIX = "bundled:"


def require(module: str, package: str, purpose: str):
    """Import ``module`` or fail with an install hint naming the package and why it is needed."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise OperatorSetupError(f"{purpose} needs the '{package}' package: pip install {package} ({exc})") from exc


def is_bundled(ref: str) -> bool:
    return ref.startswith(BUNDLED_PREFIX)


def describe(ref: str) -> str:
    """How a reference was resolved, for error messages."""
    if is_bundled(ref):
        return f"bundled model {ref[len(BUNDLED_PREFIX):]!r}"
    if os.path.isdir(ref):
        return f"local folder {ref!r}"
    return f"hub id {ref!r}"
