"""Shared rules for naming models in configs.

A model reference is one of:
  ``bundled:<name>``   a model shipped inside a Python package (works offline),
  a local folder       loaded from disk,
  a hub id             ``org/name``, downloaded by the library on first use.

Every Hugging Face-style load (transformers models, processors, tokenizers, configs;
sentence-transformers) goes through :func:`load_pretrained`, so a folder is always read
with ``local_files_only`` and every failure names the reference the same way:
``cannot load the <what> from <describe(ref)>: <reason>``.
"""
from __future__ import annotations

import importlib
import os

from vidcurate.operators.base import OperatorSetupError

BUNDLED_PREFIX = "bundled:"
# Model weights load from safetensors only: a pickled checkpoint (pytorch_model.bin) can run code
# when it loads. A user who trusts such a checkpoint allows it explicitly with this variable.
ALLOW_PICKLE_ENV = "VIDCURATE_ALLOW_PICKLE_WEIGHTS"


def pickle_weights_allowed() -> bool:
    return os.environ.get(ALLOW_PICKLE_ENV, "").lower() in ("1", "true", "yes")


def _weights_kwargs(loader) -> dict:
    """``use_safetensors=True`` for transformers model classes (configs, tokenizers and processors hold
    no weights), unless pickled weights are allowed."""
    name = getattr(loader, "__name__", "")
    is_model = name.startswith("AutoModel") or any(
        base.__name__ == "PreTrainedModel" for base in getattr(loader, "__mro__", ()))
    return {"use_safetensors": True} if is_model and not pickle_weights_allowed() else {}


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


def resolve(ref: str, what: str = "a model") -> tuple[str, bool]:
    """What to hand a ``from_pretrained``-style loader for ``ref``, and whether it is a local folder.

    A reference that can only be a path (see ``looks_like_path``) but is not a folder fails
    here, with the reason, instead of as a confusing hub lookup."""
    path = os.path.expanduser(ref)
    if os.path.isdir(path):
        return path, True
    if looks_like_path(ref):
        raise OperatorSetupError(f"cannot load {what} from {describe(ref)} "
                                 f"(a model is a local folder or a hub id such as org/name)")
    return ref, False


def quiet_progress_bars() -> None:
    """No "Loading weights" / download bars from transformers in build logs (no-op without it)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()


def load_pretrained(loader, ref: str, revision: str | None = None, what: str = "model",
                    to_device: str | None = None, **kwargs):
    """``loader.from_pretrained(ref)`` (or ``loader(ref)`` for a plain callable such as
    ``SentenceTransformer``) with vidcurate's reference rules.

    The reference is resolved first (``~`` expanded; a path that is not a folder fails
    before any hub lookup); a folder is read with ``local_files_only`` so a missing file is
    reported as missing instead of being looked for on the hub under the folder's name;
    ``revision`` is passed as given (the hub's default branch when None). ``to_device``
    moves a model there and puts it in eval mode, inside the same error handling: a model
    that loads but cannot be placed is just as unusable. Whatever the library raises
    (OSError for missing files or an unknown hub id, ValueError for an unknown
    architecture, ImportError for a missing optional package, RuntimeError for mismatched
    weights, ...) becomes an :class:`OperatorSetupError` reading
    ``cannot load the <what> from <describe(ref)>: <type>: <message>``.
    """
    path, local = resolve(ref, what=f"the {what}")
    quiet_progress_bars()
    load = getattr(loader, "from_pretrained", loader)
    try:
        loaded = load(path, revision=revision, local_files_only=local, **_weights_kwargs(loader), **kwargs)
        if to_device is not None:
            loaded = loaded.to(to_device).eval()
    except OperatorSetupError:
        raise
    except Exception as exc:
        pickled = local and any(os.path.exists(os.path.join(path, n)) for n in ("pytorch_model.bin",
                                                                               "pytorch_model.bin.index.json"))
        advice = (f"; its weights are a pickle (pytorch_model.bin), which can run code when loaded: convert them "
                  f"to safetensors, or set {ALLOW_PICKLE_ENV}=1 if you trust this checkpoint"
                  if pickled and _weights_kwargs(loader) else "")
        raise OperatorSetupError(f"cannot load the {what} from {describe(ref)}: {type(exc).__name__}: {exc}{advice}"
                                 ) from exc
    return loaded
