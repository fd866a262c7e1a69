"""Named moments at which the crash tests kill a build, as a real crash would (``kill -9``).

With ``VIDCURATE_KILL_AT=<moment>[#N]`` set, the process that reaches the N-th (default: the
first) moment matching ``<moment>`` kills the whole build with SIGKILL: the build's process
(``VIDCURATE_BUILD_PID``, set by the command line for itself and every process it starts,
Ray's and Beam's workers included) and then itself. No cleanup runs, as after a power cut. The
moments are where a crash leaves the most half-done state:

    start                      the build has read its config and inputs, nothing is written yet
    before:<file>              <file> is written in full under its staged name, not yet renamed
    after:<file>               <file> is renamed into place, nothing else has happened since
    sample:<shard>             a sample was appended to <shard> (still staged: a partial shard)
    worker:<stage>             a worker is inside stage <stage> (the crash of a native decoder)

``<file>`` is the path in OUT a ``Destination`` publishes (``shards/train/shard-*.tar``,
``_journal/entry-*.json``, ``index.parquet``, ...), matched as a glob, so ``before:shards/*``
is "during a shard rename" and ``before:index.parquet`` "during the final table write". Only
tests set the variable; unset, a moment costs one dictionary lookup.

``worker:<stage>`` kills only the worker (not the build) when the moment's spec ends in
``@<uri substring>`` and the stage's batch holds that uri: ``worker:extract_clips@poison``
makes every worker that cuts the clips of an input whose uri holds "poison" die, which is
how the tests make a poison input.
"""
from __future__ import annotations

import os
import signal
from fnmatch import fnmatchcase

KILL_ENV = "VIDCURATE_KILL_AT"
BUILD_PID_ENV = "VIDCURATE_BUILD_PID"

_hits: dict[str, int] = {}


def reached(moment: str) -> None:
    """Kill the build here if the crash tests asked for ``moment``."""
    spec = os.environ.get(KILL_ENV)
    if not spec or "@" in spec:
        return
    pattern, _, nth = spec.partition("#")
    if not fnmatchcase(moment, pattern):
        return
    _hits[pattern] = _hits.get(pattern, 0) + 1
    if _hits[pattern] == int(nth or 1):
        kill_build()


def worker_reached(stage: str, records: list[dict]) -> None:
    """Kill this worker (alone) if the crash tests made an input of this batch a poison for ``stage``."""
    spec = os.environ.get(KILL_ENV)
    if not spec or "@" not in spec:
        return
    pattern, _, needle = spec.partition("@")
    if fnmatchcase(f"worker:{stage}", pattern) and any(needle in (r.get("uri") or "") for r in records):
        os.kill(os.getpid(), signal.SIGKILL)


def kill_build() -> None:
    build = int(os.environ.get(BUILD_PID_ENV) or 0)
    if build and build != os.getpid():
        try:
            os.kill(build, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os.kill(os.getpid(), signal.SIGKILL)


def mark_build_process() -> None:
    """This process is the build: the processes it starts kill it when a moment is reached."""
    os.environ.setdefault(BUILD_PID_ENV, str(os.getpid()))
