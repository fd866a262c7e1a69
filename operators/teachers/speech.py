"""speech_teacher: Whisper ASR on each clip's audio, gated by Silero VAD.

Silence and most music produce no text, in three layers: Silero VAD must find at least
``min_speech_seconds`` of speech before Whisper runs (Whisper alone hallucinates on
music), segments Whisper itself marks as non-speech are dropped, and transcripts of fewer
than ``min_words`` words are not kept. The VAD alone is not enough: on Big Buck Bunny's
music it marks 1.4 s as speech at threshold 0.5 (0.5 s even at 0.9), and Whisper answers
"Mm.", which ``min_words`` drops. The transcript is both a caption candidate (modality
"S") and the clip's ``transcript``, which text teachers use as Panda-70M's subtitles. A
transcript failing the checks every candidate passes (a hallucinated "Thank you. Thank
you. ..." is repetitive) is a rejected candidate instead; it stays the transcript.
"""
from __future__ import annotations

from typing import ClassVar, Literal, Optional

import numpy as np
from pydantic import Field, PrivateAttr

from vidcurate.operators.base import Operator, Resources
from vidcurate.operators.extract import ASR_SAMPLE_RATE
from vidcurate.operators.teachers.candidates import add_candidate, clean_text


class SpeechTeacher(Operator):
    """Adds the clip's speech, transcribed by Whisper, as a candidate; silence and music add none, never a reject.

    Also sets ``transcript`` (text teachers use it as Panda-70M's subtitles) and
    ``speech_seconds`` (what the VAD heard).
    """

    name: ClassVar[str] = "speech_teacher"
    resources: ClassVar[Resources] = Resources(cpus=1, batch_size=8)
    requires: ClassVar[tuple[str, ...]] = ("audio_pcm",)
    provides: ClassVar[tuple[str, ...]] = ("transcript", "speech_seconds", "candidates", "rejected_candidates")

    model: str = Field("bundled:tiny.en", description="CTranslate2 Whisper: bundled:tiny.en, a local folder or a hub id.")
    revision: Optional[str] = Field(None, description="Hub revision of the model.")
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    gpus: float = Field(0.0, ge=0, description="GPUs per worker (set with device: cuda; fractions share a GPU).")
    compute_type: str = Field("int8", description="CTranslate2 compute type (int8, float16, ...).")
    language: Optional[str] = Field("en", description="Spoken language; None lets Whisper detect it.")
    beam_size: int = Field(1, ge=1, le=10)
    vad_threshold: float = Field(0.5, gt=0, lt=1, description="Silero VAD speech probability threshold.")
    min_speech_seconds: float = Field(0.5, ge=0, description="Less speech than this: no transcript.")
    min_words: int = Field(2, ge=1, description="Shorter transcripts (\"Mm.\", \"Thank you.\") are dropped as noise.")

    _asr = PrivateAttr(default=None)
    _vad = PrivateAttr(default=None)

    def setup(self) -> None:
        from vidcurate.operators.models.whisper import SileroVAD, WhisperASR

        self._vad = SileroVAD(self.vad_threshold)
        self._asr = WhisperASR(self.model, self.device, self.compute_type, self.revision)

    def teardown(self) -> None:
        self._asr = self._vad = None

    def process_record(self, record: dict) -> dict:
        record = {**record, "candidates": list(record.get("candidates") or []),
                  "transcript": None, "speech_seconds": 0.0}
        pcm = record.get("audio_pcm")
        if not pcm:
            self.stats.incr(f"{self.name}.no_audio")
            return record
        audio = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
        seconds, speech = self._vad.speech(audio, ASR_SAMPLE_RATE)
        record["speech_seconds"] = round(seconds, 3)
        if seconds < self.min_speech_seconds:
            self.stats.incr(f"{self.name}.no_speech")
            return record
        result = self._asr.transcribe(speech, self.language, self.beam_size, seconds)
        text = clean_text(result.text)
        if len(text.split()) < self.min_words:
            self.stats.incr(f"{self.name}.transcript_too_short")
            return record
        record["transcript"] = text
        added = add_candidate(record, teacher=self.name, modality="S", text=text, min_words=self.min_words,
                              raw=result.text, model_id=self.model, model_revision=self.revision,
                              params={"beam_size": self.beam_size, "language": self.language,
                                      "vad_threshold": self.vad_threshold, "compute_type": self.compute_type})
        self.stats.incr(f"{self.name}.transcribed" if added else
                        f"{self.name}.candidate_rejected.{record['rejected_candidates'][-1]['reason']}")
        return record
