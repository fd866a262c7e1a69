"""student_teacher: a trained student captioner (vidcurate refine / train) writes a candidate per clip.

Panda-70M trained its student to be the cheap captioner of the whole corpus; here the student
of a refinement round is also a teacher like the others, inside a normal build: clips are
batched across videos, each clip's frames are decoded from its mp4 the way the student was
trained (operators/frames.py), metadata text inputs come from the record (title,
description, subtitles) when the student was trained with them. Decoding: ``greedy`` or
``panda`` (3 beams with sampling, top-p 0.9, temperature 1.5), or the checkpoint's own.
Every candidate carries its provenance: the checkpoint, its training version and the
decoding parameters. A clip that cannot be decoded gets a rejected candidate (the clip stays).
"""
from __future__ import annotations

import hashlib
from typing import ClassVar, Literal, Optional

import numpy as np
from pydantic import Field, PrivateAttr

from vidcurate.operators.base import Operator, Resources
from vidcurate.operators.teachers.candidates import add_candidate, add_candidate_reject, clean_caption


class StudentTeacher(Operator):
    """Captions every clip with a trained student captioner (a checkpoint folder or hub id)."""

    name: ClassVar[str] = "student_teacher"
    resources: ClassVar[Resources] = Resources(cpus=1, batch_size=32)
    requires: ClassVar[tuple[str, ...]] = ("mp4",)
    provides: ClassVar[tuple[str, ...]] = ("candidates",)
    modality: ClassVar[str] = "V"

    model: str = Field(..., description="Student checkpoint: a folder (vidcurate refine / train) or hub id.")
    revision: Optional[str] = None
    label: str = Field("student", description="Teacher name written on the candidates.")
    decoding: Literal["checkpoint", "greedy", "panda"] = Field("checkpoint", description="Decoding preset.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    gpus: float = Field(0.0, ge=0, description="GPUs per worker (fractions share a GPU).")
    batch_size: int = Field(32, ge=1, le=4096, description="Clips per generate call (batched across videos).")
    seed: int = Field(0, description="Seed of sampled decoding (the same clips give the same captions).")
    min_words: int = Field(3, ge=1)

    _model = PrivateAttr(default=None)
    _provenance = PrivateAttr(default=None)

    def setup(self) -> None:
        from vidcurate.operators.models.student import DECODING_PRESETS, load_student, resolve_device

        self._model = load_student(self.model, resolve_device(self.device), self.revision)
        decoding = self._model.config.decoding if self.decoding == "checkpoint" else DECODING_PRESETS[self.decoding]
        self._decoding = decoding
        self._provenance = {"checkpoint": self.model, "decoding": decoding.model_dump(),
                            "text_inputs": list(self._model.config.text_inputs), "seed": self.seed}

    def teardown(self) -> None:
        self._model = None

    def process_batch(self, records: list[dict]) -> list[dict]:
        import torch

        from vidcurate.operators.frames import decode_frames

        config = self._model.config
        out = [{**r, "candidates": list(r.get("candidates") or []),
                "rejected_candidates": list(r.get("rejected_candidates") or [])} for r in records]
        frames, ready = [], []
        for number, record in enumerate(out):
            try:
                frames.append(decode_frames(record["mp4"], config.num_frames, tuple(config.frame_size),
                                            num_frames_hint=record.get("clip_num_frames"),
                                            name=str(record.get("clip_id"))))
                ready.append(number)
            except Exception as exc:
                add_candidate_reject(record, teacher=self.label, reason="undecodable_clip",
                                     detail=f"clip {record.get('clip_id')}: {type(exc).__name__}: {exc}")
                self.stats.incr(f"{self.name}.candidate_rejected.undecodable_clip")
        if not ready:
            return out
        first = str(out[ready[0]].get("clip_id"))  # sampled decoding: the same clips give the same captions
        torch.manual_seed(self.seed * 1_000_003 + int(hashlib.sha1(first.encode()).hexdigest()[:8], 16))
        texts = [{f: out[n].get(f) for f in config.text_inputs} for n in ready]
        captions = self._model.generate(torch.from_numpy(np.stack(frames)), texts, self._decoding)
        for number, raw in zip(ready, captions):
            text = clean_caption(raw, first_sentence_only=False, strip_boilerplate=True)
            if add_candidate(out[number], teacher=self.label, modality=self.modality, text=text,
                             min_words=self.min_words, raw=raw, model_id=self.model, model_revision=self.revision,
                             params=self._provenance):
                self.stats.incr(f"{self.name}.captioned")
            else:
                reason = out[number]["rejected_candidates"][-1]["reason"]
                self.stats.incr(f"{self.name}.candidate_rejected.{reason}")
        return out
