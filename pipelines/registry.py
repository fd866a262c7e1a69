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
    """The operator class for a config's ``op:``: a registered name, or ``package.module:ClassName``
    for a user's own operator (an ``Operator`` subclass whose ``name`` is that same path)."""
    if ":" in name and name not in OPERATORS:
        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise KeyError(f"{name} ({type(exc).__name__}: {exc})") from None
        from vidcurate.operators.base import Operator

        if not (isinstance(cls, type) and issubclass(cls, Operator)) or cls.name != name:
            raise KeyError(f"{name} (not an Operator subclass whose name is {name!r})")
        return cls
    if name not in OPERATORS:
        raise KeyError(name)
    module, _, attr = OPERATORS[name].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    assert cls.name == name, f"registry name {name!r} != {cls.__name__}.name {cls.name!r}"
    return cls
