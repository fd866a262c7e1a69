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

With a ``writer`` (the build's ``SampleWriter``), what the stages produce goes through it, in
this process, as one long-lived stream: shards fill to their limits across chunks, and
``emit`` gets the writer's metadata. A chunk's videos are finished once none of their
samples waits in an open shard (``writer.holds``); the rest when the writer is flushed at
the end.
"""
from __future__ import annotations

from typing import ClassVar, Iterable, Iterator

from vidcurate.operators.stats import Stats
from vidcurate.pipelines.runners.base import Emit, stream_stages


class LocalRunner:
    draws_progress: ClassVar[bool] = False

    def __init__(self, operators: list, videos_per_chunk: int = 4, progress=None, writer=None):
        self.operators = operators
        self.videos_per_chunk = videos_per_chunk
        self.progress = progress
        self.writer = writer

    @classmethod
    def from_config(cls, stages: list, run, progress=None, writer=None) -> "LocalRunner":
        return cls(stages, run.videos_per_chunk, progress=progress, writer=writer)

    def run(self, sources: Iterable[dict], emit: Emit) -> Stats:
        stages = self.operators + ([self.writer] if self.writer is not None else [])
        try:
            for op in stages:
                op.ensure_setup()
            if self.writer is None:
                for records, finished in self._through_stages(sources):
                    if records or finished:
                        emit(records, finished)
            else:
                self._through_writer(sources, emit)
        finally:
            for op in stages:
                op.close()
        return self.stats()

    def _through_stages(self, sources: Iterable[dict]) -> Iterator[tuple[list[dict], list[str]]]:
        """(records, []) as the stages produce them; ([], a chunk's uris) once it is drained."""
        for chunk in _chunks(sources, self.videos_per_chunk):
            for records in stream_stages(self.operators, [chunk], self.progress):
                yield records, []
            yield [], [source["uri"] for source in chunk]
            if self.progress is not None:
                self.progress.videos_done(len(chunk))

    def _through_writer(self, sources: Iterable[dict], emit: Emit) -> None:
        writer, waiting = self.writer, []  # waiting: drained videos whose samples may sit in an open shard

        def records():
            for batch, finished in self._through_stages(sources):
                waiting.extend(finished)
                yield batch

        for metas in writer.stream(records()):
            finished = [uri for uri in waiting if not writer.holds(uri)]
            waiting[:] = [uri for uri in waiting if writer.holds(uri)]
            if metas or finished:
                emit(metas, finished)
        emit(writer.flush(), list(waiting))

    def stats(self) -> Stats:
        """Every stage's counters and timers, merged (also after a stopped run)."""
        return Stats.total(op.stats for op in self.operators + ([self.writer] if self.writer is not None else []))


def _chunks(items: Iterable[dict], size: int) -> Iterator[list[dict]]:
    chunk: list[dict] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
