"""The local runner: the pipeline as an in-process loop over chunks of source videos.

Videos are taken ``videos_per_chunk`` at a time through every operator, each operator
seeing batches of its declared ``batch_size``; each chunk's records are handed to
``emit`` before the next chunk starts, so memory holds one chunk's clips at most.
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator

from vidcurate.operators.base import Operator
from vidcurate.operators.stats import Stats


class LocalRunner:
    def __init__(self, operators: list[Operator], videos_per_chunk: int = 4):
        self.operators = operators
        self.videos_per_chunk = videos_per_chunk

    def run(self, sources: Iterable[dict], emit: Callable[[list[dict]], None]) -> Stats:
        try:
            for op in self.operators:
                op.ensure_setup()
            for chunk in _chunks(sources, self.videos_per_chunk):
                records = chunk
                for op in self.operators:
                    records = run_operator(op, records)
                emit(records)
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


def run_operator(op: Operator, records: list[dict]) -> list[dict]:
    size = op.declared_resources().batch_size
    out: list[dict] = []
    for first in range(0, len(records), size):
        out.extend(op(records[first:first + size]))
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
