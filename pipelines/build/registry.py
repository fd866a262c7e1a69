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
    "student_teacher": "vidcurate.operators.teachers.student:StudentTeacher",
    "consensus_selector": "vidcurate.operators.select.consensus:ConsensusSelector",
    "retriever_selector": "vidcurate.operators.select.retriever:RetrieverSelector",
    "weighted_selector": "vidcurate.operators.select.retriever:WeightedSelector",
    "teacher_selector": "vidcurate.operators.select.teacher:TeacherSelector",
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


# ---- how `vidcurate ops` describes an operator -------------------------------------------
def operator_summary(name: str, cls) -> str:
    """One line: the class docstring's first line, else its module's (several operators share a
    module, so the class's own line is what tells them apart). RST markup is dropped."""
    import sys

    for doc in (cls.__dict__.get("__doc__"), getattr(sys.modules.get(cls.__module__), "__doc__", None)):
        lines = (doc or "").strip().splitlines()
        if lines and lines[0].strip():
            line = lines[0].strip().replace("``", "")
            line = line[len(name) + 1:].strip() if line.startswith(f"{name}:") else line
            return line[:1].upper() + line[1:]
    return "(no description: the operator class has no docstring)"


def resources_text(resources) -> str:
    """``Resources`` as a user reads it: "1 CPU, 0 GPU, batch 8" (memory when declared)."""
    text = f"{resources.cpus:g} CPU, {resources.gpus:g} GPU, batch {resources.batch_size}"
    return text + (f", {resources.memory_gb:g} GB memory" if resources.memory_gb else "")


def default_resources(cls):
    """What a worker of ``cls`` with default fields declares: the class's ``resources`` with the
    defaults of its ``threads``/``gpus``/``batch_size`` fields (see Operator.declared_resources)."""
    from dataclasses import replace

    fields = cls.model_fields
    overrides = {res: fields[name].get_default(call_default_factory=True)
                 for name, res in cls.RESOURCE_FIELDS.items() if name in fields and not fields[name].is_required()}
    return replace(cls.resources, **overrides) if overrides else cls.resources


def field_type_text(info) -> str:
    """A field's accepted values: "one of: a, b" for a Literal, else its type with the
    pydantic bounds ("int >= 1", "float >= 0, <= 255"), "or None" when it may be null."""
    import types
    from typing import Literal, Union, get_args, get_origin

    annotation = info.annotation
    optional = False
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        optional = len(args) < len(get_args(annotation))
        annotation = args[0] if len(args) == 1 else annotation

    def name_of(tp) -> str:
        if get_origin(tp) is Literal:
            return "one of: " + ", ".join(str(v) for v in get_args(tp))
        if get_origin(tp) is list and get_args(tp) and get_origin(get_args(tp)[0]) is Literal:
            return "list of: " + ", ".join(str(v) for v in get_args(get_args(tp)[0]))
        if isinstance(tp, type) and not get_args(tp):
            return tp.__name__
        return str(tp).replace("typing.", "")

    text = name_of(annotation)
    signs = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    bounds = [f"{signs[attr]} {getattr(meta, attr)}" for meta in info.metadata for attr in signs
              if getattr(meta, attr, None) is not None]
    if bounds:
        text += " " + ", ".join(bounds)
    if optional:
        text += " (or None)" if text.startswith(("one of", "list of")) else ", or None"
    return text


def field_lines(cls) -> list[str]:
    """One line per configuration field: ``name = default`` (or ``name (required)``), the values
    it accepts, and its description."""
    lines = []
    for field_name, info in cls.model_fields.items():
        head = (f"{field_name} (required)" if info.is_required()
                else f"{field_name} = {info.get_default(call_default_factory=True)!r}")
        lines.append("  ".join(part for part in (head, field_type_text(info), info.description or "") if part))
    return lines
