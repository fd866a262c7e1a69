"""Runners adapt the stages to an execution engine; this registry names them (one entry a runner).

Config validation (``run.runner``), the build and the command line's ``--runner`` choices all
read this one table, so adding a runner is one entry here plus its module. Only runners import
ray or apache_beam, and only when they run.
"""
from __future__ import annotations

import importlib

# name -> (module:class, what it is, for help texts)
RUNNERS: dict[str, tuple[str, str]] = {
    "local": ("vidcurate.pipelines.runners.local:LocalRunner", "local (the in-process loop)"),
    "ray": ("vidcurate.pipelines.runners.ray_runner:RayRunner",
            "ray (Ray Data; joins RAY_ADDRESS or run.ray_address, else starts a local Ray instance for the build)"),
    "beam": ("vidcurate.pipelines.runners.beam.runner:BeamRunner",
             "beam (Apache Beam; Beam's own flags after --, e.g. -- --runner=FlinkRunner; default FnApiRunner)"),
}


def runner_names() -> list[str]:
    return list(RUNNERS)


def describe_runners() -> str:
    return ", or ".join(description for _, description in RUNNERS.values())


def runner_class(name: str):
    """The runner class registered as ``name`` (imported on first use)."""
    if name not in RUNNERS:
        raise KeyError(f"unknown runner {name!r}; known: {', '.join(RUNNERS)}")
    module, _, attr = RUNNERS[name][0].partition(":")
    return getattr(importlib.import_module(module), attr)
