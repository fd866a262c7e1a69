"""What a runner and a stage are, and how records stream through a list of stages.

A **stage** is anything a runner schedules: an ``Operator``, the Ray runner's fused CPU
operators (``FusedStages``), the stage cache (``CachedStages``). Every stage has the same
interface, so runners never ask which kind they hold:

    name, declared_resources()   what it is called and what one worker of it needs
    is_stateful()                keeps what it loaded (models, GPUs): one long-lived worker (a Ray actor)
    ensure_setup(), close()      load once per worker; free
    stream(batches, progress)    batches of records in, batches out, lazily
    stats                        its counters and timers (operators/stats.py)

A **runner** takes source records, runs the stages and then the build's sample writer
(``operators/write/sample_writer.py``) where the clips are, and hands the writer's metadata
to ``emit`` (the build's sink and failure budget), saying when a video's last metadata has
gone (``emit(metadata, finished_uris)``). Without a writer (tests, tools) it emits the
stages' records. Runners are registered by name in
``pipelines/runners/__init__.py``; a config's ``run.runner`` names one.
"""
from __future__ import annotations

from typing import Callable, ClassVar, Iterable, Iterator, Protocol, runtime_checkable

from vidcurate.operators.base import Resources
from vidcurate.operators.stats import Stats

# emit(records, finished): records = any records; finished = source uris all of whose
# records have now been emitted.
Emit = Callable[[list[dict], list[str]], None]


@runtime_checkable
class Stage(Protocol):
    name: str

    def declared_resources(self) -> Resources: ...

    def is_stateful(self) -> bool: ...

    def ensure_setup(self) -> None: ...

    def stream(self, batches: Iterable[list[dict]], progress=None) -> Iterator[list[dict]]: ...

    def close(self) -> None: ...

    @property
    def stats(self) -> Stats: ...


@runtime_checkable
class Runner(Protocol):
    # True when the engine draws its own progress (Ray Data's bars): the build then draws none.
    draws_progress: ClassVar[bool]

    @classmethod
    def from_config(cls, stages: list, run, progress=None, writer=None) -> "Runner":
        """A runner for ``stages`` configured by a ``RunConfig``; ``progress``: the build's display
        (pipelines/build/progress.py), told how records and videos advance; ``writer``: the
        build's SampleWriter, run after the stages."""

    def run(self, sources: Iterable[dict], emit: Emit) -> Stats: ...

    def stats(self) -> Stats: ...


def stream_stages(stages: list, batches: Iterable[list[dict]], progress=None) -> Iterator[list[dict]]:
    """``batches`` of records through every stage in turn, lazily (a generator chain)."""
    stream: Iterable[list[dict]] = batches
    for stage in stages:
        stream = stage.stream(stream, progress)
    return iter(stream)


def run_operator(op, records: list[dict], progress=None) -> list[dict]:
    """All ``records`` through one stage in batches of its declared size (a list in, a list out)."""
    return [r for batch in op.stream([records], progress) for r in batch]
