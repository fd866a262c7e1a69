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

A stage may provide its own ``stream(batches)`` (e.g. the stage cache); otherwise
``stream_operator`` batches for it.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable, Iterator

from vidcurate.operators.base import Operator, is_ok
from vidcurate.operators.stats import Stats

# emit(records, finished): records = any records; finished = source uris all of whose
# records have now been emitted.
Emit = Callable[[list[dict], list[str]], None]


class LocalRunner:
    def __init__(self, operators: list[Operator], videos_per_chunk: int = 4, progress=None):
        self.operators = operators
        self.videos_per_chunk = videos_per_chunk
        self.progress = progress

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
        """Every operator's counters and timers, merged (also after a stopped run)."""
        stats = Stats()
        for op in self.operators:
            stats.merge(op.stats)
        return stats


def stream_stages(stages: list, batches: Iterable[list[dict]], progress=None) -> Iterator[list[dict]]:
    """``batches`` of records through every stage in turn, lazily (a generator chain)."""
    stream: Iterable[list[dict]] = batches
    for stage in stages:
        stream = stage.stream(stream) if hasattr(stage, "stream") else stream_operator(stage, stream, progress)
    return iter(stream)


def stream_operator(op: Operator, batches: Iterable[list[dict]], progress=None) -> Iterator[list[dict]]:
    """Call ``op`` on full batches of its declared size as records arrive; the rest at the end."""
    size = op.declared_resources().batch_size
    pending: list[dict] = []
    for batch in batches:
        pending.extend(batch)
        first = 0
        while len(pending) - first >= size:
            yield _call(op, pending[first:first + size], progress)
            first += size
        del pending[:first]
    if pending:
        yield _call(op, pending, progress)


def run_operator(op: Operator, records: list[dict], progress=None) -> list[dict]:
    """All ``records`` through ``op`` in batches of its declared size (a list in, a list out)."""
    return [r for batch in stream_operator(op, [records], progress) for r in batch]


def _call(op: Operator, batch: list[dict], progress) -> list[dict]:
    if progress is None:
        return op(batch)
    started = time.perf_counter()
    done = op(batch)
    # ok records only, as the operator's own records_in / records_out counters
    progress.advance(op.name, sum(1 for r in batch if is_ok(r)), sum(1 for r in done if is_ok(r)),
                     seconds=time.perf_counter() - started)
    return done


def _chunks(items: Iterable[dict], size: int) -> Iterator[list[dict]]:
    chunk: list[dict] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
