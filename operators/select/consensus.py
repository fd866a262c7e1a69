"""consensus_selector: choose the candidate that agrees best with the other candidates.

Every candidate text of a batch of clips is embedded at once (batching across clips
and videos) with a sentence embedder (bundled all-MiniLM-L6-v2 by default). A
candidate's score is its mean cosine similarity to the clip's other candidates; the
highest score wins, ties go to the longer (more descriptive) text. With one candidate
there is nothing to agree with: it is selected and its score stays null. A clip with
no candidate is rejected (``no_caption_candidates``): a sample without a caption is not
training data.

This is the offline stand-in for Panda-70M's fine-tuned video-text retriever, which
scores candidates against the video itself; that selector arrives with its own issue
and writes the same SELECTION fields.
"""
from __future__ import annotations

from typing import ClassVar, Literal, Optional

import numpy as np
from pydantic import Field, PrivateAttr

from vidcurate.operators.base import Operator, Resources
from vidcurate.operators.select.common import count_win, reject_without_candidates


class ConsensusSelector(Operator):
    """Selects the candidate agreeing best with the clip's other candidates; rejects clips with no candidate.

    Scores every candidate (``score``), writes the winner as ``caption`` with its
    ``caption_teacher``; a clip without candidates is rejected as no_caption_candidates.
    """

    name: ClassVar[str] = "consensus_selector"
    resources: ClassVar[Resources] = Resources(cpus=1, batch_size=64)
    requires: ClassVar[tuple[str, ...]] = ("candidates",)
    provides: ClassVar[tuple[str, ...]] = ("caption", "caption_teacher", "score", "selector")

    model: str = Field("bundled:all-MiniLM-L6-v2", description="Sentence embedder: bundled name, folder or hub id.")
    revision: Optional[str] = None
    device: Literal["cpu", "cuda"] = "cpu"
    gpus: float = Field(0.0, ge=0, description="GPUs per worker (set with device: cuda; fractions share a GPU).")

    _embedder = PrivateAttr(default=None)

    def setup(self) -> None:
        from vidcurate.operators.models.text_embedder import TextEmbedder

        self._embedder = TextEmbedder(self.model, self.device, self.revision)

    def teardown(self) -> None:
        self._embedder = None

    def process_batch(self, records: list[dict]) -> list[dict]:
        texts = [c["text"] for r in records for c in (r.get("candidates") or [])]
        vectors = self._embedder.embed(texts) if texts else None
        out, offset = [], 0
        for record in records:
            candidates = [dict(c) for c in (record.get("candidates") or [])]
            if not candidates:
                out.append(reject_without_candidates(self, record))
                continue
            emb = vectors[offset:offset + len(candidates)]
            offset += len(candidates)
            scores = consensus_scores(emb)
            for candidate, score in zip(candidates, scores):
                candidate["score"] = None if score is None else round(float(score), 6)
            # Rounded scores decide, so float noise in a symmetric similarity cannot break a tie.
            best = max(range(len(candidates)),
                       key=lambda i: (candidates[i]["score"] if scores[i] is not None else -1.0,
                                      len(candidates[i]["text"])))
            count_win(self, candidates[best]["teacher"])
            out.append({**record, "candidates": candidates, "caption": candidates[best]["text"],
                        "caption_teacher": candidates[best]["teacher"], "score": candidates[best]["score"],
                        "selector": f"{self.name}:{self.model}"})
        return out


def consensus_scores(embeddings: np.ndarray) -> list[Optional[float]]:
    """Mean cosine similarity of each unit vector to the others; None when alone."""
    n = len(embeddings)
    if n < 2:
        return [None] * n
    sims = embeddings @ embeddings.T
    # Exactly symmetric, and the diagonal left out rather than subtracted: a pair that agrees
    # only with each other gets the very same score (a BLAS product need not be symmetric, and
    # |v|^2 is 1 only up to rounding), so the tie rule decides, not float noise.
    sims = (sims + sims.T) / 2
    others = ~np.eye(n, dtype=bool)
    return [float(sims[i][others[i]].sum() / (n - 1)) for i in range(n)]
