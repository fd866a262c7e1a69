"""Operator names used in pipeline configs, and where each operator lives.

Imports are lazy: naming an operator in a config does not import every model library.
"""
from __future__ import annotations

import importlib

from vidcurate.operators.filters import FILTERS

OPERATORS: dict[str, str] = {
    "probe": "vidcurate.operators.probe:ProbeVideo",
    "split_shots": "vidcurate.operators.split.shots:ShotSplit",
    "extract_clips": "vidcurate.operators.extract:ExtractClips",
    "speech_teacher": "vidcurate.operators.teachers.speech:SpeechTeacher",
    "metadata_teacher": "vidcurate.operators.teachers.metadata:MetadataTeacher",
    "ocr_teacher": "vidcurate.operators.teachers.ocr:OcrTeacher",
    "video_teacher": "vidcurate.operators.teachers.generative:VideoTeacher",
    "frame_teacher": "vidcurate.operators.teachers.generative:FrameTeacher",
    "text_teacher": "vidcurate.operators.teachers.generative:TextTeacher",
    "consensus_selector": "vidcurate.operators.select.consensus:ConsensusSelector",
    **FILTERS,
}


def operator_class(name: str):
    if name not in OPERATORS:
        raise KeyError(name)
    module, _, attr = OPERATORS[name].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    assert cls.name == name, f"registry name {name!r} != {cls.__name__}.name {cls.name!r}"
    return cls
