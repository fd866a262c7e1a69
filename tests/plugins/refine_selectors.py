"""A selector for the refinement tests, used as ``--selector refine_selectors:StudentOnEvenClips`` with
tests/plugins on PYTHONPATH: it chooses the student's candidate on clips whose id hashes even and the
first other candidate elsewhere, so which captions a round may change is known in advance."""
from __future__ import annotations

import hashlib
from typing import ClassVar

from vidcurate.operators.base import Operator, Resources


def student_wins(clip_id: str) -> bool:
    return int(hashlib.sha1(clip_id.encode()).hexdigest(), 16) % 2 == 0


class StudentOnEvenClips(Operator):
    name: ClassVar[str] = "refine_selectors:StudentOnEvenClips"
    resources: ClassVar[Resources] = Resources(cpus=1, batch_size=16)
    requires: ClassVar[tuple[str, ...]] = ("candidates",)

    def process_record(self, record: dict) -> dict:
        candidates = [dict(c) for c in record["candidates"]]
        students = [n for n, c in enumerate(candidates) if c["teacher"].startswith("student-")]
        others = [n for n, c in enumerate(candidates) if not c["teacher"].startswith("student-")]
        pick = students[-1] if students and student_wins(record["clip_id"]) else others[0]
        for n, candidate in enumerate(candidates):
            candidate["score"] = 1.0 if n == pick else 0.0
        return {**record, "candidates": candidates, "caption": candidates[pick]["text"],
                "caption_teacher": candidates[pick]["teacher"], "score": 1.0, "selector": self.name}


class StudentWinsByKnownMargins(Operator):
    """Chooses the student's candidate on every clip, scored 0.9 on clips that hash even and 0.6 elsewhere,
    over 0.5 for every other candidate: it wins by 0.4 or by 0.1 (for ``refine --min-margin``)."""
    name: ClassVar[str] = "refine_selectors:StudentWinsByKnownMargins"
    resources: ClassVar[Resources] = Resources(cpus=1, batch_size=16)
    requires: ClassVar[tuple[str, ...]] = ("candidates",)

    def process_record(self, record: dict) -> dict:
        candidates = [dict(c) for c in record["candidates"]]
        students = [n for n, c in enumerate(candidates) if c["teacher"].startswith("student-")]
        high = 0.9 if student_wins(record["clip_id"]) else 0.6
        for n, candidate in enumerate(candidates):
            candidate["score"] = high if n in students else 0.5
        pick = students[-1] if students else 0
        return {**record, "candidates": candidates, "caption": candidates[pick]["text"],
                "caption_teacher": candidates[pick]["teacher"], "score": candidates[pick]["score"],
                "selector": self.name}
