"""The filter contract: a tiny operator that keeps a clip or says why not.

A filter implements two small methods and the base does the rest::

    measure(record) -> float | None      # the value the decision is made on (optional)
    keep(record, value) -> True | (False, reason, detail)

``reason`` is a stable snake_case code ("clip_too_short"), ``detail`` a sentence naming
the clip and the value against the threshold ("clip 3.04-4.10 s is 1.06 s < min_seconds
2.0"). ``keep`` receives the measured value so an expensive measurement (OCR) runs once
and is recorded on both paths.

For every clip the base (one failure path, no per-filter branches):

  * rejects it as ``no_<field>`` when a field named in ``requires`` is missing or empty
    (``hint`` says which stage produces it);
  * stores the measured value in ``record["filter_scores"][name]`` (a new dict, the
    input record is not changed) so kept clips carry why they passed and rejects why
    they failed;
  * returns the record, or ``self.fail(record, reason, detail)``: the base
    :class:`Operator` counts ``<name>.rejected.<reason>`` and passes rejects through
    later stages untouched.

A ``measure`` that finds bad input raises :class:`RecordError`, which the base Operator
turns into a reject the same way. Pairs named in ``bounds`` (("min_x", "max_x"), ...)
are checked once here: min <= max, or the configuration is refused naming both fields.
"""
from __future__ import annotations

import math
from typing import ClassVar, Union

from pydantic import model_validator

from vidcurate.operators.base import Operator, Resources

Verdict = Union[bool, tuple[bool, str, str]]


class Filter(Operator):
    """Base class of clip filters. Subclasses set ``name``, ``requires`` and implement ``keep``."""

    name: ClassVar[str] = "filter"
    resources: ClassVar[Resources] = Resources(cpus=0.25, batch_size=64)
    provides: ClassVar[tuple[str, ...]] = ("filter_scores",)
    # (min_field, max_field) pairs that must satisfy min <= max.
    bounds: ClassVar[tuple[tuple[str, str], ...]] = ()
    # Where the required fields come from, for the no_<field> reject detail.
    hint: ClassVar[str] = ""

    @model_validator(mode="after")
    def _check_bounds(self):
        for low, high in self.bounds:
            lo, hi = getattr(self, low), getattr(self, high)
            if lo > hi:
                raise ValueError(f"{self.name}: {low} ({lo}) must be <= {high} ({hi})")
        return self

    # ---- what a filter implements ----------------------------------------------------
    def measure(self, record: dict) -> float | None:
        """The value ``keep`` decides on, recorded in ``filter_scores``; None records nothing."""
        return None

    def keep(self, record: dict, value: float | None) -> Verdict:
        raise NotImplementedError(f"{type(self).__name__} does not implement keep()")

    # ---- the one path ----------------------------------------------------------------
    def process_record(self, record: dict) -> dict:
        for field in self.requires:
            if _absent(record.get(field)):
                needs = f"{self.name} needs it" + (f"; {self.hint}" if self.hint else "")
                return self.fail(record, f"no_{field}", f"{clip_label(record)} has no {field!r} ({needs})")
        value = self.measure(record)
        if value is not None:
            value = float(value)
            if not math.isfinite(value):
                return self.fail(record, "invalid_score", f"{clip_label(record)}: {self.name} measured {value}")
            record = {**record, "filter_scores": {**(record.get("filter_scores") or {}), self.name: value}}
        verdict = self.keep(record, value)
        if verdict is True:
            return record
        _, reason, detail = verdict
        return self.fail(record, reason, detail)


class RangeFilter(Filter):
    """A filter keeping clips whose measured value lies within the first ``bounds`` pair.

    Subclasses name the two reject reasons and say how a detail shows the value
    (``describe``); the comparison and the detail sentence live here once.
    """

    too_low: ClassVar[str] = "value_too_low"
    too_high: ClassVar[str] = "value_too_high"

    def describe(self, record: dict, value: float) -> str:
        return f"measured {value:.3f}"

    def keep(self, record: dict, value: float) -> Verdict:
        low, high = self.bounds[0]
        for outside, field, sign, reason in ((value < getattr(self, low), low, "<", self.too_low),
                                             (value > getattr(self, high), high, ">", self.too_high)):
            if outside:
                return False, reason, (f"{clip_label(record)} {self.describe(record, value)} "
                                       f"{sign} {field} {getattr(self, field)}")
        return True


def clip_label(record: dict) -> str:
    """How a detail names a clip: its span in the source ("clip 3.04-4.10 s"), else its id."""
    start, end = record.get("start"), record.get("end")
    if isinstance(start, (int, float)) and isinstance(end, (int, float)):
        return f"clip {start:.2f}-{end:.2f} s"
    return f"clip {record.get('clip_id') or record.get('uri') or '?'}"


def _absent(value) -> bool:
    if value is None:
        return True
    try:
        return len(value) == 0
    except TypeError:
        return False
