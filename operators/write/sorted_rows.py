"""Sorting more rows than memory should hold: the index and the rejects table of a build.

Rows are spread by source-video ranges over spill files (about ``max_rows`` rows each, the
ranges cut from the per-video row counts the journal keeps), then each range is sorted by
pyarrow and handed on in turn. Every row of a video falls in one range and the ranges are in
uri order, so the output is in the global order of ``sort_keys`` (uri first) while at most
about ``max_rows`` rows are in memory: the coordinator's memory stays flat in the number of
clips. One range (a build of up to ``max_rows`` rows) needs no spill file.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

MAX_ROWS_IN_MEMORY = 50_000


def uri_ranges(rows_per_uri: Mapping[str, int], max_rows: int) -> list[str]:
    """The last uri of each range but the last: ranges of about ``max_rows`` rows, in uri order."""
    bounds: list[str] = []
    held = 0
    for uri in sorted(rows_per_uri):
        held += rows_per_uri[uri]
        if held >= max_rows:
            bounds.append(uri)
            held = 0
    return bounds


def sorted_tables(parts: Iterable[pa.Table], sort_keys: list[tuple[str, str]], rows_per_uri: Mapping[str, int],
                  max_rows: int = MAX_ROWS_IN_MEMORY) -> Iterator[pa.Table]:
    """The rows of ``parts`` (tables of one schema with a ``uri`` column) as tables in
    ``sort_keys`` order (uri first); ``rows_per_uri``: about how many rows each uri has (the
    ranges are cut from it; a uri missing from it is still placed right)."""
    bounds = uri_ranges(rows_per_uri, max_rows)
    if not bounds:  # one range: kept in memory
        parts = [part for part in parts if part.num_rows]
        if parts:
            yield _sort(pa.concat_tables(parts), sort_keys)
        return
    with tempfile.TemporaryDirectory(prefix="vidcurate-sort-") as spill:
        files = _spill(parts, bounds, spill, flush_at=max(64, max_rows // (2 * (len(bounds) + 1))))
        for part in range(len(bounds) + 1):
            names = files.get(part)
            if not names:
                continue
            table = pa.concat_tables(pq.read_table(name, use_threads=False) for name in names)
            for name in names:
                os.remove(name)
            yield _sort(table, sort_keys)


def _spill(parts: Iterable[pa.Table], bounds: list[str], spill: str, flush_at: int) -> dict[int, list[str]]:
    """Write the rows of ``parts`` to spill files by uri range; returns range -> its files."""
    buffers: dict[int, list[pa.Table]] = {}
    files: dict[int, list[str]] = {}

    def flush(part: int) -> None:
        name = os.path.join(spill, f"{part:06d}-{len(files.get(part, [])):06d}.parquet")
        pq.write_table(pa.concat_tables(buffers.pop(part)), name)
        files.setdefault(part, []).append(name)

    for table in parts:
        if not table.num_rows:
            continue
        uris = np.array(pc.fill_null(table["uri"], "").to_pylist(), dtype=object)
        ranges = np.searchsorted(np.array(bounds, dtype=object), uris, side="left")  # bisect_left, per row
        for part in np.unique(ranges):
            part = int(part)
            buffers.setdefault(part, []).append(table.filter(pa.array(ranges == part)))
            if sum(rows.num_rows for rows in buffers[part]) >= flush_at:
                flush(part)
    for part in list(buffers):
        flush(part)
    return files


def _sort(table: pa.Table, sort_keys: list[tuple[str, str]]) -> pa.Table:
    return table.sort_by(sort_keys)  # nulls last


class TableFile:
    """A parquet table written batch by batch to a staging file, published whole on ``close``."""

    def __init__(self, dest, name: str, schema: pa.Schema, row_group_rows: int = 64 * 1024):
        self.dest, self.name, self.schema, self.row_group_rows = dest, name, schema, row_group_rows
        self.rows = 0
        self._staged = dest.staging_path(name)
        self._writer = pq.ParquetWriter(self._staged, schema)

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(table.select(self.schema.names).cast(self.schema), row_group_size=self.row_group_rows)
        self.rows += table.num_rows

    def close(self) -> None:
        self._writer.close()
        self.dest.publish(self._staged, self.name)
