"""The build itself: a config's operators run over the inputs by a runner into a dataset folder.

    run.py          build() and retry_failed(): claim OUT, resume, run, account, write the tables
    outcome.py      BuildResult, FailureBudget, BuildError, OutputError
    config.py       YAML -> validated BuildConfig (configs/: the bundled ones)
    registry.py     operator names -> classes, and how `vidcurate ops` describes them
    stage_cache.py  per-video records after run.cache_after, so later-stage changes never re-decode
    card.py         OUT/README.md, the dataset card
    progress.py     progress bars on a terminal, rare lines in logs
    hints.py        what to do about the most common reject reasons

``from vidcurate.pipelines.build import build`` is the entry point; the names below load their
module on first use, so reading a config does not import the runners.
"""
from __future__ import annotations

import importlib

_EXPORTS = {"build": "run", "retry_failed": "run", "vidcurate_version": "run", "BuildResult": "outcome",
            "FailureBudget": "outcome", "BuildError": "outcome", "OutputError": "outcome"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
