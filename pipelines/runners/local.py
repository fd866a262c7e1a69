"""The local runner: the pipeline as an in-process stream over chunks of source videos.

Videos are taken ``videos_per_chunk`` at a time. Within a chunk, records stream through
the operators: each operator is called on batches of its declared ``batch_size`` as soon
as its input holds that many records, and what the last operator returns is handed to
``emit`` at once. So a long video's clips are cut, captioned and written a batch at a time,
and memory holds a few batches of clips, whatever the video's length (a one-hour video is
never held whole). After a chunk is drained, ``emit([], uris)`` tells the caller that
every record of those videos has been emitted (the sink may then commit them).

An optional ``progress`` (``pipelines.progress.Progress``, or anything with its
``advance``/``videos_done`` methods) is told after every operator batch how many ok
records went in and out, and after every chunk how many videos it held. The caller owns
its lifetime (``with Progress(...) as progress``); the runner only reports.

Every stage streams itself (pipelines/runners/base.py): an operator calls itself on batches
of its declared size, the stage cache loads or computes whole videos.
"""
from __future__ import annotations

from typing import ClassVar, Iterable, Iterator

from vidcurate.operators.stats import Stats
from vidcurate.pipelines.runners.base import Emit, stream_stages


class LocalRunner:
    draws_progress: ClassVar[bool] = False

    def __init__(self, operators: list, videos_per_chunk: int = 4, progress=None):
        self.operators = operators
        self.videos_per_chunk = videos_per_chunk
        self.progress = progress

    @classmethod
    def from_config(cls, stages: list, run, progress=None) -> "LocalRunner":
        return cls(stages, run.videos_per_chunk, progress=progress)

    def run(self, sources: Iterable[dict], emit: Emit) -> Stats:
        try:
            for op in self.operators:
                op.ensure_setup()
            for chunk in _chunks(sources, self.videos_per_chunk):
                for records in stream_stages(self.operators, [chunk], self.progress):
                    if records:
                        emit(records, [])
                emit([], [source["uri"] for source in chunk])
                if self.progress is not None:
                    self.progress.videos_done(len(chunk))
        finally:
            for op in self.operators:
                op.close()
        return self.stats()

    def stats(self) -> Stats:
        """Every stage's counters and timers, merged (also after a stopped run)."""
        return Stats.total(op.stats for op in self.operators)


def _chunks(items: Iterable[dict], size: int) -> Iterator[list[dict]]:
    chunk: list[dict] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
