"""ocr_teacher: on-screen text of each clip (titles, signs, subtitles burned in) as a candidate.

RapidOCR's PP-OCRv4 (the same bundled models as filter_text_area, loaded through
``models/ocr.py``) reads every keyframe extract_clips made (use ``keyframes: uniform`` to
read more than the middle frame). A line is kept when the recognizer's confidence is at
least ``min_confidence`` and it holds at least ``min_chars`` letters or digits: on real
street footage the detector takes blurred car lights for text, which the recognizer reads
as "■" or "V" at 0.56-0.60, so both rules are needed. Lines are deduplicated across
keyframes ignoring case and whitespace (a title shown for the whole clip is read once per
keyframe; OCR sometimes drops a space), keeping the first reading, in first-seen order.
Keyframes shorter than ``min_height`` are enlarged first: on 448x190 keyframes of
bikes.mp4 a 24 px title read "CITYTRAFFICREPORT", enlarged to 380 px "CITY TRAFFIC REPORT"
(no slower: the detector resizes its input anyway).

The kept lines are the clip's ``ocr_text`` and, joined with "; ", one caption candidate
(modality "T"), unless it fails the checks every candidate passes (mostly digits, such as
a burned-in timestamp, is not text): then it is a rejected candidate. A clip with no
readable text gets neither and is counted as ``ocr_teacher.no_text``; an undecodable
keyframe is skipped and counted, never a reject: a teacher that has nothing to say
leaves the clip to the others.
"""
from __future__ import annotations

from typing import ClassVar

from pydantic import Field, PrivateAttr

from vidcurate.operators.base import Operator, Resources
from vidcurate.operators.models.ocr import MODEL_ID
from vidcurate.operators.teachers.candidates import add_candidate, clean_text


def line_key(text: str) -> str:
    """What makes two OCR lines the same: case and whitespace ignored."""
    return "".join(text.lower().split())


class OcrTeacher(Operator):
    """Adds the on-screen text read off the clip's keyframes as a candidate; a clip without text adds none.

    Never rejects: a clip with no readable text (or an undecodable keyframe) is only
    counted, and the other teachers caption it.
    """

    name: ClassVar[str] = "ocr_teacher"
    resources: ClassVar[Resources] = Resources(cpus=1, memory_gb=0.5, batch_size=8)
    requires: ClassVar[tuple[str, ...]] = ("keyframes",)
    provides: ClassVar[tuple[str, ...]] = ("candidates", "ocr_text", "rejected_candidates")

    min_confidence: float = Field(0.6, ge=0, le=1, description="Recognizer confidence a line needs to be kept.")
    min_chars: int = Field(3, ge=1, description="Letters or digits a line needs (drops '■', 'V' read off bokeh).")
    min_height: int = Field(360, ge=0, description="Keyframes shorter than this are enlarged before reading "
                                                   "(small text loses the spaces between words); 0: never.")
    max_words: int = Field(60, ge=1, description="The candidate is cut to this many words.")
    threads: int = Field(1, ge=1, description="onnxruntime threads per worker (also the worker's declared cpus).")

    _ocr = PrivateAttr(default=None)

    def setup(self) -> None:
        from vidcurate.operators.models.ocr import RapidOCR

        self._ocr = RapidOCR(self.name, self.min_confidence, self.threads)

    def teardown(self) -> None:
        self._ocr = None

    def process_record(self, record: dict) -> dict:
        lines = self.read(record.get("keyframes") or [])
        record = {**record, "candidates": list(record.get("candidates") or []), "ocr_text": lines}
        text = clean_text("; ".join(lines), self.max_words)
        if not text:
            self.stats.incr(f"{self.name}.no_text")
            return record
        # One word is enough here (a shop sign, a name): min_chars already judged each line.
        if add_candidate(record, teacher=self.name, modality="T", text=text, min_words=1, model_id=MODEL_ID,
                         params=self.model_dump(mode="json")):
            self.stats.incr(f"{self.name}.candidates")
        else:
            self.stats.incr(f"{self.name}.candidate_rejected.{record['rejected_candidates'][-1]['reason']}")
        return record

    def read(self, keyframes: list[bytes]) -> list[str]:
        """The deduplicated lines kept from ``keyframes``, in first-seen order."""
        seen: dict[str, str] = {}
        for jpeg in keyframes:
            bgr = self._ocr.decode(jpeg)
            if bgr is None:
                self.stats.incr(f"{self.name}.bad_keyframe")
                continue
            height = bgr.shape[0]
            if height < self.min_height:
                scale = self.min_height / height
                bgr = self._ocr.cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=self._ocr.cv2.INTER_CUBIC)
            for line in self._ocr.lines(bgr):
                text = " ".join(line.text.split())
                if line.score < self.min_confidence or sum(ch.isalnum() for ch in text) < self.min_chars:
                    continue
                seen.setdefault(line_key(text), text)
        return list(seen.values())
