"""The two towers of a CLIP/SigLIP-style image-text model, through transformers.

One wrapper for everything that embeds frames with such a model: the splitter's
``transformers`` frame embedder (operators/split/embedders.py, which adds the splitting
thresholds) and a video-text retriever whose video tower embeds frames one by one. Both
want the same thing: unit vectors from ``get_image_features``, batch after batch, and,
for the retriever, unit vectors of texts in the same space from ``get_text_features``.

The model is ``AutoModel`` + ``AutoImageProcessor`` (a local folder or a hub id at
``revision``, loaded through ``load_pretrained``). The tokenizer is loaded on the first
``embed_text`` call only: a frame embedder never needs it, and a folder saved with just
the image processor must keep working.
"""
from __future__ import annotations

import inspect

import numpy as np

from vidcurate.operators.base import OperatorSetupError
from vidcurate.operators.models.loading import describe, load_pretrained, require

# Trained with every text padded to the full context (64 tokens): other padding shifts
# their text embeddings (the transformers docs of SigLIP say so), CLIP pools at the end token.
PAD_TO_MAX_LENGTH = ("siglip", "siglip2")


class ImageTower:
    """Load once; ``embed(frames)`` -> [n, dim] unit rows; ``embed_text(texts)`` -> the same space.

    ``frames`` are RGB uint8 arrays shaped [n, h, w, 3] (any h, w: the image processor
    resizes them). Batches of ``batch_size`` bound memory; a frame's vector does not
    depend on its batch.
    """

    def __init__(self, model: str, revision: str | None = None, device: str = "cpu", batch_size: int = 32):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_ref, self.revision, self.device, self.batch_size = model, revision, device, batch_size
        self._torch = require("torch", "torch", "the CLIP/SigLIP image tower")
        self._tf = require("transformers", "transformers", "the CLIP/SigLIP image tower")
        self.processor = load_pretrained(self._tf.AutoImageProcessor, model, revision, what="image processor")
        self.model = load_pretrained(self._tf.AutoModel, model, revision, what="image-text model", to_device=device)
        if not callable(getattr(self.model, "get_image_features", None)):
            raise OperatorSetupError(
                f"{describe(model)} loads as {type(self.model).__name__}, which has no get_image_features: "
                f"use a CLIP/SigLIP-style image-text model")
        self._dtype = next(self.model.parameters()).dtype
        self._tokenizer = None
        try:  # one tiny frame: the embedding size, and proof the model runs
            self.dim = int(self._embed_batch(np.zeros((1, 32, 32, 3), dtype=np.uint8)).shape[1])
        except Exception as exc:
            raise OperatorSetupError(f"the image tower of {describe(model)} failed on a test frame: "
                                     f"{type(exc).__name__}: {exc}") from exc

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """float32 [n, dim] unit rows, one per frame; n may be 0."""
        if len(frames) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate([self._embed_batch(frames[i:i + self.batch_size])
                               for i in range(0, len(frames), self.batch_size)], axis=0)

    def embed_text(self, texts: list[str]) -> np.ndarray:
        """float32 [n, dim] unit rows from the paired text tower, comparable with ``embed``'s by dot product.

        Texts longer than the model's context are truncated to it.
        """
        if not callable(getattr(self.model, "get_text_features", None)):
            raise OperatorSetupError(f"{describe(self.model_ref)} loads as {type(self.model).__name__}, "
                                     f"which has no get_text_features: it cannot embed text")
        if self._tokenizer is None:
            self._tokenizer = self._load_tokenizer()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate([self._embed_text_batch(list(texts[i:i + self.batch_size]))
                               for i in range(0, len(texts), self.batch_size)], axis=0)

    def _load_tokenizer(self):
        tokenizer = load_pretrained(self._tf.AutoTokenizer, self.model_ref, self.revision, what="tokenizer")
        # transformers 5 builds an empty tokenizer (a handful of special tokens, every word
        # unknown) from a folder with no tokenizer files: every text would get one vector.
        config = self.model.config
        vocab = getattr(getattr(config, "text_config", config), "vocab_size", None) or 0
        if len(tokenizer) < vocab // 2:
            raise OperatorSetupError(
                f"cannot load the tokenizer from {describe(self.model_ref)}: it has {len(tokenizer)} tokens "
                f"for a text tower of {vocab} (no tokenizer files in the folder?)")
        return tokenizer

    def _embed_batch(self, frames: np.ndarray) -> np.ndarray:
        inputs = self.processor(images=list(frames), return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device, dtype=self._dtype)
        with self._torch.inference_mode():
            output = self.model.get_image_features(pixel_values=pixel_values)
        return self._unit_rows(_pooled(output, self._torch, "get_image_features"))

    def _embed_text_batch(self, texts: list[str]) -> np.ndarray:
        config = self.model.config
        context = getattr(getattr(config, "text_config", config), "max_position_embeddings", None)
        limit = min(n for n in (self._tokenizer.model_max_length, context) if n)
        padding = "max_length" if getattr(config, "model_type", "") in PAD_TO_MAX_LENGTH else True
        inputs = self._tokenizer(texts, padding=padding, truncation=True, max_length=limit, return_tensors="pt")
        # only what the text tower takes: a generic fast tokenizer also returns token_type_ids
        accepted = inspect.signature(self.model.get_text_features).parameters
        inputs = {k: v.to(self.device) for k, v in inputs.items() if k in accepted}
        with self._torch.inference_mode():
            output = self.model.get_text_features(**inputs)
        return self._unit_rows(_pooled(output, self._torch, "get_text_features"))

    def _unit_rows(self, features) -> np.ndarray:
        features = self._torch.nn.functional.normalize(features.float(), dim=-1)
        return features.cpu().numpy().astype(np.float32, copy=False)


def _pooled(output, torch, method: str):
    """The pooled embedding from whatever ``get_image_features`` / ``get_text_features`` returned.

    transformers 4 returns a tensor; transformers 5 a ``BaseModelOutputWithPooling``
    whose ``pooler_output`` is the (projected) embedding, or its tuple form.
    """
    if torch.is_tensor(output):
        features = output
    else:
        features = getattr(output, "pooler_output", None)
        if features is None and isinstance(output, (tuple, list)):
            features = next((t for t in output if torch.is_tensor(t) and t.ndim == 2), None)
        if features is None:
            raise TypeError(f"{method} returned {type(output).__name__} without a pooled embedding")
    if features.ndim != 2:
        features = features.reshape(features.shape[0], -1)
    return features
