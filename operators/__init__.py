"""Runner-agnostic operators: atoms of a vidcurate pipeline.

Nothing in this package imports ray or apache_beam; runners in
``vidcurate.pipelines.runners`` adapt operators to a local loop, Ray Data or Beam.
"""
from vidcurate.operators.base import Operator, RecordError, Resources
from vidcurate.operators.stats import Stats

__all__ = ["Operator", "RecordError", "Resources", "Stats"]
