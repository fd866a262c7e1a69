"""Clip filters: tiny operators that keep a clip or reject it with a counted reason.

``FILTERS`` maps config names to "module:Class" for ``pipelines/build/registry.py``. Importing
this package is cheap: the OCR library is imported in ``TextAreaFilter.setup()``.
"""
from __future__ import annotations

from vidcurate.operators.filters.base import Filter, RangeFilter, clip_label
from vidcurate.operators.filters.basic import AspectRatioFilter, DurationFilter, MotionFilter, ResolutionFilter
from vidcurate.operators.filters.text_area import TextAreaFilter

FILTERS: dict[str, str] = {
    "filter_duration": "vidcurate.operators.filters.basic:DurationFilter",
    "filter_resolution": "vidcurate.operators.filters.basic:ResolutionFilter",
    "filter_aspect": "vidcurate.operators.filters.basic:AspectRatioFilter",
    "filter_motion": "vidcurate.operators.filters.basic:MotionFilter",
    "filter_text_area": "vidcurate.operators.filters.text_area:TextAreaFilter",
}

__all__ = ["FILTERS", "AspectRatioFilter", "DurationFilter", "Filter", "MotionFilter", "RangeFilter", "ResolutionFilter",
           "TextAreaFilter", "clip_label"]
