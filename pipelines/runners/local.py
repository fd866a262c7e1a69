"""The local runner: the pipeline as an in-process loop over chunks of source videos.

Videos are taken ``videos_per_chunk`` at a time through every operator, each operator
seeing batches of its declared ``batch_size``; each chunk's records are handed to
``emit`` before the next chunk starts, so memory holds one chunk's clips at most.

An optional ``progress`` (``pipelines.progress.Progress``, or anything with its
``advance``/``videos_done`` methods) is told after every operator batch how many ok
records went in and out, and after every emitted chunk how many videos it held. The
caller owns its lifetime (``with Progress(...) as progress``); the runner only reports.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable, Iterator

from vidcurate.operators.base import Operator, is_ok
from vidcurate.operators.stats import Stats


class LocalRunner:
    def __init__(self, operators: list[Operator], videos_per_chunk: int = 4, progress=None):
        self.operators = operators
        self.videos_per_chunk = videos_per_chunk
        self.progress = progress

    def run(self, sources: Iterable[dict], emit: Callable[[list[dict]], None]) -> Stats:
        try:
            for op in self.operators:
                op.ensure_setup()
            for chunk in _chunks(sources, self.videos_per_chunk):
                records = chunk
                for op in self.operators:
                    records = run_operator(op, records, self.progress)
                emit(records)
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


def run_operator(op: Operator, records: list[dict], progress=None) -> list[dict]:
    size = op.declared_resources().batch_size
    out: list[dict] = []
    for first in range(0, len(records), size):
        batch = records[first:first + size]
        if progress is None:
            out.extend(op(batch))
            continue
        started = time.perf_counter()
        done = op(batch)
        seconds = time.perf_counter() - started
        out.extend(done)
        # ok records only, as the operator's own records_in / records_out counters
        progress.advance(op.name, sum(1 for r in batch if is_ok(r)), sum(1 for r in done if is_ok(r)),
                         seconds=seconds)
    return out


def _chunks(items: Iterable[dict], size: int) -> Iterator[list[dict]]:
    chunk: list[dict] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
