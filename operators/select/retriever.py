"""retriever_selector: the fine-tuned video-text retriever picks each clip's caption (Panda-70M 3.3).

Every candidate of every clip in a batch is scored in one forward pass (the batch's clips
through the video tower once, all their candidates through the text tower once). The
winner is the highest selection score (Unmasked Teacher's mix of matching probability and
softmax over the clip's candidates: operators/models/retriever/config.py). Written fields
are the consensus selector's: every candidate's ``score`` (the mix), the ``caption``, its
``caption_teacher``, and ``score``: the chosen caption's matching probability, the
number Panda-70M released per clip, which does not depend on how many candidates a clip
has. ``threshold`` rejects clips whose chosen caption matches worse
(``below_match_threshold``; Panda's 10M subset kept > 0.43). Frames are decoded from the
clip's mp4 as the training loaders decode them (operators/frames.py); a clip that cannot
be decoded is rejected (``undecodable_clip``). Wins per teacher go to the stats.

weighted_selector adds per-teacher priors: final = (1 - prior_weight) x selection score +
prior_weight x prior(teacher), priors given in the config or measured from a labels file
(how often people chose a teacher's candidate when it was shown).
"""
from __future__ import annotations

from typing import ClassVar, Literal, Optional

import numpy as np
from pydantic import Field, PrivateAttr

from vidcurate.operators.base import Operator, Resources
from vidcurate.operators.select.common import count_win, reject_without_candidates


class RetrieverSelector(Operator):
    """Selects the caption a fine-tuned video-text retriever scores best; can drop weak matches."""

    name: ClassVar[str] = "retriever_selector"
    resources: ClassVar[Resources] = Resources(cpus=1, batch_size=128)
    requires: ClassVar[tuple[str, ...]] = ("candidates", "mp4")
    provides: ClassVar[tuple[str, ...]] = ("caption", "caption_teacher", "score", "selector")

    model: str = Field(..., description="Retriever checkpoint: folder (vidcurate retriever finetune) or hub id.")
    revision: Optional[str] = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    gpus: float = Field(0.0, ge=0, description="GPUs per worker (with device cuda/auto; fractions share a GPU).")
    batch_size: int = Field(128, ge=1, description="Clips per call; decoding of one forward batch overlaps "
                                                   "the forward pass of the one before.")
    forward_batch_size: int = Field(32, ge=1, description="Clips per forward pass.")
    threshold: Optional[float] = Field(None, ge=0, le=1, description="Reject clips whose chosen caption's "
                                                                     "matching probability is below this.")
    match_weight: Optional[float] = Field(None, ge=0, le=1, description="Override the checkpoint's UMT weight.")

    _model = PrivateAttr(default=None)

    def setup(self) -> None:
        from vidcurate.operators.models.retriever import load_retriever, resolve_device

        self._model = load_retriever(self.model, resolve_device(self.device), self.revision)
        if self.match_weight is not None:
            self._model.config.match_weight = self.match_weight

    def teardown(self) -> None:
        self._model = None

    def final_scores(self, scores: np.ndarray, candidates: list[dict]) -> np.ndarray:
        """The scores the argmax decides by: the retriever's own here (weighted_selector mixes in priors)."""
        return scores

    def process_batch(self, records: list[dict]) -> list[dict]:
        """Decoding of the next ``forward_batch_size`` clips (a thread: decord and torch release the
        GIL) overlaps the forward pass of the current ones."""
        from concurrent.futures import ThreadPoolExecutor

        import torch

        out: dict[int, dict] = {}
        todo = []
        for number, record in enumerate(records):
            if record.get("candidates"):
                todo.append(number)
            else:
                out[number] = reject_without_candidates(self, record)
        size = self.forward_batch_size
        chunks = [todo[i:i + size] for i in range(0, len(todo), size)]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="retriever-decode") as pool:
            pending = pool.submit(self._decode, records, chunks[0]) if chunks else None
            for position, chunk in enumerate(chunks):
                decoded = pending.result()
                if position + 1 < len(chunks):
                    pending = pool.submit(self._decode, records, chunks[position + 1])
                for number, problem in decoded["failed"].items():
                    out[number] = self.fail(records[number], "undecodable_clip", problem)
                ready = [n for n in chunk if n not in decoded["failed"]]
                if not ready:
                    continue
                scored = self._model.score_candidates(torch.from_numpy(np.stack([decoded["frames"][n] for n in ready])),
                                                      [[c["text"] for c in records[n]["candidates"]] for n in ready])
                for number, result in zip(ready, scored):
                    out[number] = self._select(records[number], result)
        return [out[n] for n in range(len(records))]

    def _decode(self, records: list[dict], numbers: list[int]) -> dict:
        from vidcurate.operators.frames import decode_frames

        config = self._model.config
        frames, failed = {}, {}
        for number in numbers:
            record = records[number]
            try:
                frames[number] = decode_frames(record["mp4"], config.num_frames, tuple(config.frame_size),
                                               num_frames_hint=record.get("clip_num_frames"),
                                               name=str(record.get("clip_id")))
            except Exception as exc:
                failed[number] = (f"clip {record.get('clip_id')}: its mp4 could not be decoded for the retriever "
                                  f"({type(exc).__name__}: {exc})")
        return {"frames": frames, "failed": failed}

    def _select(self, record: dict, result: dict) -> dict:
        candidates = [dict(c) for c in record["candidates"]]
        scores = np.asarray(result["scores"], dtype=np.float64)
        final = self.final_scores(scores, candidates)
        for candidate, value in zip(candidates, final):
            candidate["score"] = round(float(value), 6)
        best = int(np.argmax(final))
        match = round(float(result["match"][best]), 6)
        if self.threshold is not None and match < self.threshold:
            return self.fail({**record, "candidates": candidates}, "below_match_threshold",
                             f"clip {record.get('clip_id')}: its best caption matches the clip with probability "
                             f"{match:.3f}, below the threshold {self.threshold}")
        count_win(self, candidates[best]["teacher"])
        return {**record, "candidates": candidates, "caption": candidates[best]["text"],
                "caption_teacher": candidates[best]["teacher"], "score": match,
                "selector": f"{self.name}:{self.model}"}


class WeightedSelector(RetrieverSelector):
    """Selects by the retriever's score mixed with per-teacher priors (given, or measured from labels)."""

    name: ClassVar[str] = "weighted_selector"

    teacher_priors: dict[str, float] = Field(default_factory=dict, description="Prior per teacher, 0-1.")
    priors_from: Optional[str] = Field(None, description="Labels file: a teacher's prior is how often people "
                                                         "chose its candidate when shown it.")
    prior_weight: float = Field(0.3, ge=0, le=1, description="Weight of the prior in the final score.")
    default_prior: float = Field(0.0, ge=0, le=1, description="Prior of a teacher with none given.")

    _priors = PrivateAttr(default=None)

    def setup(self) -> None:
        super().setup()
        priors = teacher_win_rates(self.priors_from) if self.priors_from else {}
        self._priors = {**priors, **self.teacher_priors}

    def final_scores(self, scores: np.ndarray, candidates: list[dict]) -> np.ndarray:
        priors = np.array([self._priors.get(c["teacher"], self.default_prior) for c in candidates])
        return (1 - self.prior_weight) * scores + self.prior_weight * priors


def teacher_win_rates(labels_path: str) -> dict[str, float]:
    """Per teacher: judgments choosing its candidate / judgments showing it ("all bad" counts as shown)."""
    from collections import Counter

    from vidcurate.schemas.labels import read_labels

    shown, chosen = Counter(), Counter()
    for row in read_labels(labels_path):
        teachers = [c["teacher"] for c in row["candidates"]]
        shown.update(set(teachers))
        if row["choice"] >= 0:
            chosen[teachers[row["choice"]]] += 1
    return {t: chosen[t] / n for t, n in shown.items()}
