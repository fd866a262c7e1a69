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
    path = os.path.expanduser(ref)
    if os.path.isdir(path):
        return f"local folder {ref!r}"
    if looks_like_path(ref):
        what = "is a file, not a model folder" if os.path.exists(path) else "does not exist"
        return f"local folder {ref!r}, which {what}"
    return f"hub id {ref!r}"


def looks_like_path(ref: str) -> bool:
    """A reference that can only be a path: absolute, ~ or ./.. relative, or deeper than org/name."""
    return ref.startswith(("/", "~", "./", "../", ".\\")) or ref.count("/") > 1 or os.path.exists(ref)


def resolve(ref: str) -> tuple[str, bool]:
    """What to hand a ``from_pretrained``-style loader for ``ref``, and whether it is a local folder.

    A reference that can only be a path (see ``looks_like_path``) but is not a folder fails
    here, with the reason, instead of as a confusing hub lookup."""
    path = os.path.expanduser(ref)
    if os.path.isdir(path):
        return path, True
    if looks_like_path(ref):
        raise OperatorSetupError(f"cannot load a model from {describe(ref)} "
                                 f"(a model is a local folder or a hub id such as org/name)")
    return ref, False
