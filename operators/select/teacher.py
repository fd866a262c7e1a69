"""teacher_selector: every clip's caption is one named teacher's candidate.

For a corpus whose captions should come from a single captioner (the one you trust, or the
only one you can afford at scale), and for Video DataFlywheel's setting, where refinement
starts from one noisy source of text rather than from a selection among many: with
``only_teacher`` the other teachers' candidates are dropped, so a later ``vidcurate refine``
round chooses between that teacher's caption and the student's alone. It is also the
single-teacher baseline a selector is judged against.

A clip without a candidate of that teacher is rejected (``no_teacher_candidate``, naming the
teacher and the ones it has), or with no candidate at all ``no_caption_candidates``. There
is no judgement here, so ``score`` is null, like the consensus selector's for a lone candidate.
"""
from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from vidcurate.operators.base import Operator, Resources
from vidcurate.operators.select.common import count_win, reject_without_candidates


class TeacherSelector(Operator):
    """Selects the named teacher's candidate; optionally drops every other teacher's."""

    name: ClassVar[str] = "teacher_selector"
    resources: ClassVar[Resources] = Resources(cpus=1, batch_size=256)
    requires: ClassVar[tuple[str, ...]] = ("candidates",)
    provides: ClassVar[tuple[str, ...]] = ("caption", "caption_teacher", "score", "selector")

    teacher: str = Field(..., min_length=1, description="The teacher whose candidate becomes the caption.")
    only_teacher: bool = Field(False, description="Keep only that teacher's candidate (drop the other teachers').")

    def process_batch(self, records: list[dict]) -> list[dict]:
        return [self._select(record) for record in records]

    def _select(self, record: dict) -> dict:
        candidates = [dict(c) for c in record.get("candidates") or []]
        if not candidates:
            return reject_without_candidates(self, record)
        mine = [c for c in candidates if c["teacher"] == self.teacher]
        if not mine:
            have = ", ".join(sorted({c["teacher"] for c in candidates}))
            return self.fail(record, "no_teacher_candidate", f"clip {record.get('clip_id')}: teacher "
                             f"{self.teacher!r} wrote no candidate for it (its candidates are from: {have})")
        chosen = mine[-1]  # a teacher that ran twice: its latest candidate
        kept = mine if self.only_teacher else candidates
        for candidate in kept:
            candidate["score"] = None
        count_win(self, self.teacher)
        return {**record, "candidates": kept, "caption": chosen["text"], "caption_teacher": self.teacher,
                "score": None, "selector": f"{self.name}:{self.teacher}"}
