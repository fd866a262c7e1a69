"""metadata_teacher: candidates from the source's own text (title, description, subtitles).

Without a language model this teacher writes no new text. It passes the user's own
metadata through as candidates, cleaned (HTML markup stripped, URLs removed, whitespace
collapsed, cut to the first sentence where asked, capped at ``max_words``):

  * ``title``        the video title, when at least ``min_words`` words long;
  * ``description``  the first sentence of the description;
  * ``subtitles``    the manifest's subtitles for the whole video, first sentence.

A text that fails the checks every teacher's text passes (too short, repetitive, not
text: ``candidates.degenerate_reason``) is listed under ``rejected_candidates`` with its
reason instead, like a model's degenerate output; a field the source lacks is skipped.

Each candidate says which field it came from (teacher ``metadata_teacher``, modality
``M``, params ``{"field": ...}``, no model id), so the selector and the index never
mistake it for a model's caption. A model-backed text teacher with Panda-70M's prompt
arrives with the teacher-family issue and writes candidates the same way.
"""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from vidcurate.operators.base import Operator, Resources
from vidcurate.operators.teachers.candidates import add_candidate, clean_caption


class MetadataTeacher(Operator):
    name: ClassVar[str] = "metadata_teacher"
    resources: ClassVar[Resources] = Resources(cpus=0.25, batch_size=64)
    provides: ClassVar[tuple[str, ...]] = ("candidates", "rejected_candidates")

    fields: list[Literal["title", "description", "subtitles"]] = Field(
        default_factory=lambda: ["title", "description", "subtitles"],
        description="Source fields that become candidates, in this order.")
    min_words: int = Field(2, ge=1, description="Shorter texts are rejected candidates (a one-word title is not a "
                           "caption).")
    max_words: int = Field(60, ge=1)

    def process_record(self, record: dict) -> dict:
        record = {**record, "candidates": list(record.get("candidates") or [])}
        for field in self.fields:
            raw = record.get(field) or ""
            if not raw.strip():
                continue  # the source has no such text: nothing was offered
            # Cleaned (markup stripped) before the first sentence is taken: in raw HTML the
            # sentence ends are hidden among tags.
            text = clean_caption(raw, first_sentence_only=field != "title", strip_boilerplate=False,
                                 max_words=self.max_words)
            if add_candidate(record, teacher=self.name, modality="M", text=text, min_words=self.min_words, raw=raw,
                             params={"field": field}):
                self.stats.incr(f"{self.name}.candidates.{field}")
            else:
                self.stats.incr(f"{self.name}.candidate_rejected.{record['rejected_candidates'][-1]['reason']}")
        return record
